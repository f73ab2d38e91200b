import CTaskWatchCrypt
import Logging
import Synchronization

/// Base64 (RFC 4648 §4, the standard alphabet) decoding that never traps: any malformed input gives nil.
public enum Base64 {
    /// Decodes `text`. Padding is optional, but when present it must be correct; whitespace and
    /// characters outside the alphabet are refused.
    public static func decode<Bytes: Collection<UInt8>>(_ text: Bytes) -> [UInt8]? {
        var body = Array(text)
        var padding = 0
        while body.last == UInt8(ascii: "=") {
            body.removeLast()
            padding += 1
        }
        if padding > 2 { return nil }
        if padding > 0, (body.count + padding) % 4 != 0 { return nil }
        if body.count % 4 == 1 { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(body.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for character in body {
            guard let value = sextet(character) else { return nil }
            accumulator = (accumulator << 6) | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // Leftover bits must be zero, so every byte string has exactly one encoding.
        if accumulator != 0 { return nil }
        return output
    }

    private static func sextet(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}

/// The user and password of an `Authorization: Basic ...` header.
public struct BasicCredentials: Sendable, Equatable {
    public var user: String
    public var password: [UInt8]

    public init(user: String, password: [UInt8]) {
        self.user = user
        self.password = password
    }

    /// Parses an `Authorization` header value. nil for another scheme, bad base64, no colon, or a
    /// user name that is not UTF-8.
    public init?(authorization: String?) {
        guard let authorization else { return nil }
        let bytes = Array(authorization.utf8)
        let isSpace: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        guard let start = bytes.firstIndex(where: { !isSpace($0) }) else { return nil }
        let end = bytes.lastIndex(where: { !isSpace($0) })! + 1
        let trimmed = bytes[start..<end]
        let scheme = Array("basic".utf8)
        guard trimmed.count > scheme.count + 1,
            zip(trimmed.prefix(scheme.count), scheme).allSatisfy({ $0 | 0x20 == $1 }),
            isSpace(trimmed[trimmed.startIndex + scheme.count])
        else { return nil }
        let token = trimmed.dropFirst(scheme.count).drop(while: isSpace)
        guard let decoded = Base64.decode(token), let colon = decoded.firstIndex(of: UInt8(ascii: ":")),
            let user = String(validating: decoded[..<colon], as: UTF8.self)
        else { return nil }
        self.user = user
        self.password = Array(decoded[(colon + 1)...])
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on where they differ.
func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    var difference = UInt8(lhs.count == rhs.count ? 0 : 1)
    let count = max(lhs.count, rhs.count)
    for index in 0..<count {
        let left = index < lhs.count ? lhs[index] : 0
        let right = index < rhs.count ? rhs[index] : 0
        difference |= left ^ right
    }
    return difference == 0
}

/// Checks basic auth against bcrypt hashes, remembering recent successes.
///
/// bcrypt at cost 10 takes tens of milliseconds by design; Prometheus scrapes every few seconds with
/// the same credentials, so paying it on every scrape would waste a core on a busy host. A success is
/// cached per user: the exact password bytes that verified, for `cacheTTL`. A later request whose
/// password equals the cached one (compared in constant time) skips bcrypt; anything else, including
/// every wrong password, runs the real check, and failures are never cached. The cache holds at most
/// one entry per configured user, so it is bounded by the config file.
///
/// Tradeoff: the password that last verified stays in the daemon's memory, in plain, for up to
/// `cacheTTL`. The daemon receives it in every request anyway, and no crypto library is linked to
/// hash it with a keyed function; a core dump of the daemon could reveal it. A reload drops the cache
/// (a new authenticator starts empty), so a removed user or changed hash takes effect at once.
public final class BasicAuthenticator: Sendable {
    public static let realm = "taskwatchd"

    private struct CacheEntry {
        var password: [UInt8]
        var expires: UInt64
    }

    private let users: [String: String]
    /// Verified against when the user is unknown, so an unknown user costs as much as a wrong password
    /// and response times do not reveal which users exist.
    private let dummyHash: String?
    private let cache = Mutex<[String: CacheEntry]>([:])
    private let cacheTTLNanoseconds: UInt64
    private let clock: any DaemonClock
    private let bcryptRuns = Atomic<UInt64>(0)

    /// - Parameter users: user name to bcrypt hash, as validated by `WebConfig`.
    public init(users: [String: String], cacheTTL: Duration = .seconds(60), clock: any DaemonClock = SystemClock()) {
        self.users = users
        self.clock = clock
        let (seconds, attoseconds) = cacheTTL.components
        cacheTTLNanoseconds = UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
        let cost =
            users.values.compactMap { hash -> UInt in
                let bytes = Array(hash.utf8)
                return bytes.count > 6 ? UInt(String(decoding: bytes[4..<6], as: UTF8.self)) ?? 10 : 10
            }.max() ?? 10
        dummyHash = users.isEmpty ? nil : Self.hash(password: Array("taskwatchd-no-such-user".utf8), cost: cost)
    }

    /// Whether any user is configured; without users every request is let through.
    public var isEnabled: Bool { !users.isEmpty }

    /// How many times bcrypt ran (for tests that check the cache).
    public var bcryptCount: UInt64 { bcryptRuns.load(ordering: .relaxed) }

    /// Hashes `password` with bcrypt at `cost` and a fresh random salt; nil if libcrypt fails.
    public static func hash(password: [UInt8], cost: UInt) -> String? {
        var output = [CChar](repeating: 0, count: 128)
        // A terminator keeps the buffer non-empty, so its base address exists even for "".
        let status = (password + [0]).withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) {
                tw_bcrypt_hash($0.baseAddress!, password.count, UInt(cost), &output, output.count)
            }
        }
        guard status == 0 else { return nil }
        return String(decoding: output.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `password` is right for `user`.
    public func verify(user: String, password: [UInt8]) -> Bool {
        let now = clock.monotonicNanoseconds()
        if let entry = cache.withLock({ $0[user] }), now < entry.expires, constantTimeEqual(entry.password, password) {
            return true
        }
        guard let hash = users[user] else {
            if let dummyHash { _ = runBcrypt(password, hash: dummyHash) }
            return false
        }
        guard runBcrypt(password, hash: hash) else { return false }
        cache.withLock { $0[user] = CacheEntry(password: password, expires: now &+ cacheTTLNanoseconds) }
        return true
    }

    private func runBcrypt(_ password: [UInt8], hash: String) -> Bool {
        bcryptRuns.add(1, ordering: .relaxed)
        return (password + [0]).withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { tw_crypt_verify($0.baseAddress!, password.count, hash) == 1 }
        }
    }

    /// nil lets `request` through; otherwise the 401 to send.
    public func authorize(_ request: HTTPRequest) -> HTTPResponse? {
        guard isEnabled else { return nil }
        if let credentials = BasicCredentials(authorization: request.headers["Authorization"]),
            verify(user: credentials.user, password: credentials.password)
        {
            return nil
        }
        return Self.unauthorized
    }

    /// The refusal: a challenge and nothing else, so an unauthenticated client learns nothing.
    public static let unauthorized = HTTPResponse(
        status: 401,
        headers: [
            ("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Basic realm=\"\(realm)\""),
        ],
        body: Array("Unauthorized\n".utf8))
}
