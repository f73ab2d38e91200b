/// `rate_limit` of the web config: a token bucket over every request, as the exporter-toolkit's
/// (golang.org/x/time/rate): one token comes back every `interval`, up to `burst` saved, and a request
/// that finds none gets `429 Too Many Requests`. Checked before basic auth, so a flood of wrong
/// passwords is turned away before bcrypt runs.
public struct RateLimit: Sendable, Equatable {
    /// Nanoseconds between two tokens.
    public var intervalNanoseconds: UInt64
    /// Tokens the bucket holds at most, and starts with.
    public var burst: Int

    public init(intervalNanoseconds: UInt64, burst: Int) {
        self.intervalNanoseconds = intervalNanoseconds
        self.burst = burst
    }
}

/// The state of one `RateLimit`: tokens saved at an instant. Pure: time is passed in.
public struct TokenBucket: Sendable {
    public let limit: RateLimit
    private var tokens: Double
    private var updatedNanoseconds: UInt64

    /// A full bucket at `now`.
    public init(_ limit: RateLimit, now: UInt64) {
        self.limit = limit
        tokens = Double(limit.burst)
        updatedNanoseconds = now
    }

    /// Takes a token if one is saved at `now`. Returns nil when it did, or the nanoseconds until the
    /// next token when it did not.
    public mutating func take(now: UInt64) -> UInt64? {
        let interval = Double(limit.intervalNanoseconds)
        if now > updatedNanoseconds {
            tokens = min(Double(limit.burst), tokens + Double(now - updatedNanoseconds) / interval)
            updatedNanoseconds = now
        }
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        return UInt64(((1 - tokens) * interval).rounded(.up))
    }
}

extension RateLimit {
    /// The answer to a request that found the bucket empty. `Retry-After` says when a token is back.
    static func tooManyRequests(retryAfterNanoseconds: UInt64) -> HTTPResponse {
        let seconds = max(1, (retryAfterNanoseconds + 999_999_999) / 1_000_000_000)
        return HTTPResponse(
            status: 429,
            headers: [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", String(seconds))],
            body: Array("Too Many Requests\n".utf8))
    }
}
