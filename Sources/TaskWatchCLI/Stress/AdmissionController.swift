/// The closed feedback loop of `taskwatch stress --limit`: multiplicative decrease while the live
/// count is above the limit, multiplicative recovery while it is below.
///
/// Every step the caller reports the live count and gets the rate to admit at until the next step.
/// Above the limit the rate drops by 20 % per step, towards zero (`ceiling / 10_000`); below it, the
/// rate restarts from at least `ceiling / 20` and grows by 20 % per step back to the ceiling, so
/// recovery takes about 17 steps; at the limit it holds. Between crossing the limit and the rate
/// falling to almost nothing, about `5 × rate × step` more tasks are admitted: that overshoot is
/// what sets how short the step must be for a given limit and rate.
struct AdmissionController: Sendable {
    static let decrease = 0.8
    static let increase = 1.2
    static let minimumFraction = 0.000_1
    static let restartFraction = 0.05

    let limit: UInt64?
    let ceiling: Double
    private(set) var rate: Double

    /// `ceiling` is the workload's own rate in tasks per second (positive and finite).
    init(limit: UInt64?, ceiling: Double) {
        self.limit = limit
        self.ceiling = ceiling
        rate = ceiling
    }

    var minimum: Double { ceiling * Self.minimumFraction }
    var restart: Double { ceiling * Self.restartFraction }

    /// Feeds one measurement; returns the admitted rate for the next step.
    @discardableResult
    mutating func update(live: UInt64) -> Double {
        guard let limit else { return rate }
        if live > limit {
            rate = max(minimum, rate * Self.decrease)
        } else if live < limit {
            rate = min(ceiling, max(restart, rate * Self.increase))
        }
        return rate
    }
}

/// Paces admissions: each step adds `rate × elapsed` tokens and admits their whole part. Tokens never
/// pile up beyond two steps' or 5 ms' worth, whichever is more, so a late step is no big burst.
struct TokenBucket: Sendable {
    private(set) var tokens: Double = 0

    mutating func admit(rate: Double, elapsedNanoseconds: UInt64, stepNanoseconds: UInt64) -> Int {
        let window = max(Double(stepNanoseconds) * 2e-9, 0.005)
        let cap = max(1, rate * window)
        tokens = min(cap, tokens + rate * Double(elapsedNanoseconds) * 1e-9)
        let whole = tokens.rounded(.down)
        tokens -= whole
        // `--rate` is bounded, so this is exact; the guard only keeps a conversion from ever trapping.
        return whole < Double(Int.max) ? Int(whole) : Int.max
    }
}
