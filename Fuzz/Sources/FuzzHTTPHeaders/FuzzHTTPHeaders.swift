import Glibc
import TaskWatchDaemon

/// The header values a scrape's handling parses: the input is split at NUL bytes into Accept,
/// Accept-Encoding and Authorization, which go through content negotiation, the basic-auth parser
/// and the whole request handler (with an authorizer that parses but skips bcrypt, to stay fast).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPHeaders(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let parts = input.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    let accept = parts.count > 0 ? parts[0] : nil
    let acceptEncoding = parts.count > 1 ? parts[1] : nil
    let authorization = parts.count > 2 ? parts[2] : nil

    _ = ContentNegotiation.exposition(accept: accept)
    _ = ContentNegotiation.acceptsGzip(acceptEncoding: acceptEncoding)
    _ = Base64.decode(UnsafeBufferPointer(rebasing: input[...]))
    if let credentials = BasicCredentials(authorization: authorization) {
        // What the parser returns must round-trip: the user is valid UTF-8 without a colon.
        if credentials.user.utf8.contains(UInt8(ascii: ":")) { abort() }
    }

    var headers: [(String, String)] = []
    if let accept { headers.append(("Accept", accept)) }
    if let acceptEncoding { headers.append(("Accept-Encoding", acceptEncoding)) }
    if let authorization { headers.append(("Authorization", authorization)) }
    let handler = WebHandler(
        authorize: { request in
            BasicCredentials(authorization: request.headers["Authorization"])?.user == "prometheus"
                ? nil : BasicAuthenticator.unauthorized
        },
        render: { format in Array((format == .openMetrics ? "# EOF\n" : "up 1\n").utf8) })
    let response = handler.handle(HTTPRequest(method: "GET", path: "/metrics", headers: HTTPHeaders(headers)))
    if response.status != 200 && response.status != 401 { abort() }
    if response.status == 401 && response.body != Array("Unauthorized\n".utf8) { abort() }
    return 0
}
