import Foundation

/// The result of one HTTP request made with curl.
public struct HTTPResult: Sendable {
    /// The status code; 0 when no response came.
    public var status: Int
    /// The response headers by lowercased name.
    public var headers: [String: String]
    public var body: Data

    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Requests `url` with curl (at most 10 s). `headers` go out as request headers; `compressed` asks for
/// and decodes a compressed body.
public func fetch(
    _ url: String, method: String = "GET", headers: [String] = [], compressed: Bool = false
) throws -> HTTPResult {
    let directory = ScratchDirectory()
    let headerFile = directory.file("headers")
    var arguments = ["-s", "-D", headerFile, "-X", method, "--max-time", "10"]
    if method == "HEAD" { arguments = ["-s", "-I", "-D", headerFile, "--max-time", "10"] }
    for header in headers { arguments += ["-H", header] }
    if compressed { arguments.append("--compressed") }
    arguments.append(url)
    let result = try runProcess("curl", arguments)
    let rawHeaders = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
    var status = 0
    var parsed: [String: String] = [:]
    for line in rawHeaders.split(separator: "\r\n") {
        if line.hasPrefix("HTTP/") {
            status = Int(line.split(separator: " ")[1]) ?? 0
        } else if let colon = line.firstIndex(of: ":") {
            parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    return HTTPResult(status: status, headers: parsed, body: result.output)
}
