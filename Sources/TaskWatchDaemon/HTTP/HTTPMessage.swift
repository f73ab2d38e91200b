import Glibc

/// Request header fields, looked up without regard to case.
public struct HTTPHeaders: Sendable, Equatable {
    /// Names are stored lowercased so a lookup is a plain comparison.
    private var fields: [(name: String, value: String)]

    /// Creates headers from `(name, value)` pairs in the order they arrived.
    public init(_ pairs: [(String, String)] = []) {
        fields = pairs.map { (name: $0.0.lowercased(), value: $0.1) }
    }

    /// The value of the field `name`, or nil if absent. A field sent more than once is joined with
    /// ", ", which RFC 9110 §5.3 makes equivalent for the list-valued fields we read (Accept,
    /// Accept-Encoding).
    public subscript(name: String) -> String? {
        let key = name.lowercased()
        let values = fields.lazy.filter { $0.name == key }.map(\.value)
        guard let first = values.first else { return nil }
        let all = Array(values)
        return all.count == 1 ? first : all.joined(separator: ", ")
    }

    /// Adds one field, keeping earlier fields of the same name.
    public mutating func append(name: String, value: String) {
        fields.append((name: name.lowercased(), value: value))
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }
}

/// One HTTP request as the handler sees it. The server never reads request bodies: `hasBody` only
/// says whether the client announced or sent one, so the handler can refuse it.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The decoded path, without the query string.
    public var path: String
    public var headers: HTTPHeaders
    public var hasBody: Bool

    public init(method: String, path: String, headers: HTTPHeaders = HTTPHeaders(), hasBody: Bool = false) {
        self.method = method
        self.path = path
        self.headers = headers
        self.hasBody = hasBody
    }
}

/// One HTTP response. `Content-Length` and `Date` are added by the server; a HEAD request gets the
/// headers of the GET response with the body left off.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// A large body handed to the server without a copy; when set, it is sent instead of `body`.
    public var ownedBody: ResponseBody?
    /// Headers only, for a HEAD answered without producing the body: the length is unknown, so the
    /// server sends no `Content-Length` and closes the connection after the headers.
    public var omitsBody: Bool

    public init(
        status: Int, headers: [(String, String)] = [], body: [UInt8] = [], ownedBody: ResponseBody? = nil,
        omitsBody: Bool = false
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.ownedBody = ownedBody
        self.omitsBody = omitsBody
    }

    /// The first value of header `name`, compared without regard to case.
    public func header(_ name: String) -> String? {
        let key = name.lowercased()
        return headers.first { $0.0.lowercased() == key }?.1
    }

    public static func == (lhs: HTTPResponse, rhs: HTTPResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body && lhs.ownedBody?.bytes == rhs.ownedBody?.bytes
            && lhs.omitsBody == rhs.omitsBody
            && lhs.headers.elementsEqual(rhs.headers) { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}

/// A response body in memory from malloc(3), handed to libmicrohttpd without a copy: a 100 k series
/// exposition is about 6 MB, and copying it twice cost more than a millisecond of the 10 ms budget.
public final class ResponseBody: @unchecked Sendable {
    // @unchecked: the memory is written once, before init returns, and only read afterwards.
    let base: UnsafeMutableRawPointer?
    public let count: Int

    /// Takes ownership of `base`, which must come from malloc(3); it is freed with free(3).
    init(adopting base: UnsafeMutableRawPointer?, count: Int) {
        self.base = base
        self.count = count
    }

    /// A body holding a copy of `bytes`.
    public convenience init(copying bytes: [UInt8]) {
        let memory = malloc(max(bytes.count, 1))
        bytes.withUnsafeBytes { source in
            if let address = source.baseAddress, let memory { memcpy(memory, address, source.count) }
        }
        self.init(adopting: memory, count: bytes.count)
    }

    /// Calls `body` with the bytes.
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// The bytes as an array (a copy).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    deinit { free(base) }
}
