import Glibc
import TaskWatchWire

/// A growable byte buffer written with `memcpy`.
///
/// Rendering 100 k series means about half a million small appends; `Array.append(contentsOf:)` pays
/// capacity and uniqueness checks on each, which alone ate most of the 10 ms budget. This type owns
/// raw memory and checks capacity once per append.
struct OutputBuffer: ~Copyable {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int = 64 * 1024) {
        self.capacity = max(capacity, 64)
        // malloc, not `allocate`: the buffer may be handed to libmicrohttpd, which frees it with free(3).
        base = malloc(self.capacity)!.assumingMemoryBound(to: UInt8.self)
    }

    deinit { free(base) }

    @inline(__always)
    mutating func reserve(_ extra: Int) {
        if count + extra > capacity { grow(to: count + extra) }
    }

    private mutating func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        base = realloc(base, newCapacity)!.assumingMemoryBound(to: UInt8.self)
        capacity = newCapacity
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        memcpy(base + count, source, bytes.count)
        count += bytes.count
    }

    @inline(__always)
    mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    @inline(__always)
    mutating func append(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { append($0) }
    }

    mutating func append(_ string: StaticString) {
        append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }

    mutating func append(string: String) {
        var string = string
        string.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends a sample value the way Prometheus writes it: integers without a fraction, `NaN`, `+Inf`,
    /// `-Inf`, otherwise the shortest representation that round-trips.
    mutating func append(value: Double) {
        if value.isNaN {
            append("NaN")
        } else if value.isInfinite {
            append(value > 0 ? "+Inf" : "-Inf")
        } else if value == value.rounded(.towardZero), abs(value) < 1e15 {
            append(integer: Int64(value))
        } else if !appendShortDecimal(value) {
            append(string: value.description)
        }
    }

    /// Powers of ten that are exact in a `Double`.
    private static let powersOfTen: (Double, Double, Double, Double, Double, Double) = (10, 1e2, 1e3, 1e4, 1e5, 1e6)

    /// Writes a value with at most six fraction digits as `digits.fraction` without allocating, when that
    /// decimal reads back as exactly `value`. Trying the fewest fraction digits first gives the shortest
    /// round-tripping form, the one `description` gives in this range (it switches to exponents only
    /// below 1e-4 and from 2^53 up). Returns false, writing nothing, for every other value.
    @inline(__always)
    private mutating func appendShortDecimal(_ value: Double) -> Bool {
        let magnitude = abs(value)
        guard magnitude >= 1e-3, magnitude < 1e9 else { return false }
        var digits = 0
        var scaled: Double = 0
        withUnsafeBytes(of: Self.powersOfTen) { raw in
            let powers = raw.assumingMemoryBound(to: Double.self)
            for index in 0..<powers.count {
                let candidate = (magnitude * powers[index]).rounded()
                if candidate / powers[index] == magnitude {
                    digits = index + 1
                    scaled = candidate
                    return
                }
            }
        }
        guard digits > 0 else { return false }
        reserve(24)
        if value < 0 {
            base[count] = UInt8(ascii: "-")
            count += 1
        }
        // Digits of the scaled integer backwards, with the point `digits` places from the right.
        var number = UInt64(scaled)
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let written = withUnsafeMutableBytes(of: &scratch) { raw -> Int in
            var index = raw.count
            var place = 0
            while number != 0 || place <= digits {
                if place == digits {
                    index -= 1
                    raw[index] = UInt8(ascii: ".")
                }
                index -= 1
                raw[index] = UInt8(ascii: "0") + UInt8(number % 10)
                number /= 10
                place += 1
            }
            let length = raw.count - index
            memcpy(base + count, raw.baseAddress! + index, length)
            return length
        }
        count += written
        return true
    }

    mutating func append(integer: Int64) {
        reserve(20)
        var magnitude = integer.magnitude
        if integer < 0 {
            base[count] = UInt8(ascii: "-")
            count += 1
        }
        // Write digits backwards into a scratch area, then copy them in order.
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let written = withUnsafeMutableBytes(of: &scratch) { raw -> Int in
            var index = raw.count
            repeat {
                index -= 1
                raw[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            let length = raw.count - index
            memcpy(base + count, raw.baseAddress! + index, length)
            return length
        }
        count += written
    }

    mutating func append(unsigned: UInt64) {
        if unsigned <= UInt64(Int64.max) {
            append(integer: Int64(unsigned))
        } else {
            append(string: String(unsigned))
        }
    }

    /// Copies the bytes out.
    func bytes() -> [UInt8] {
        Array(UnsafeBufferPointer(start: base, count: count))
    }

    /// Hands the bytes over without copying them.
    consuming func body() -> ResponseBody {
        let body = ResponseBody(adopting: UnsafeMutableRawPointer(base), count: count)
        // The body owns the memory now, so this buffer must not free it.
        discard self
        return body
    }
}

/// Escaping for the text formats.
enum Escaping {
    /// Escapes a label value for both formats: backslash, double quote and newline.
    static func labelValue(_ value: String) -> [UInt8] {
        escape(value, quote: true)
    }

    /// Escapes HELP text. Text 0.0.4 escapes backslash and newline; OpenMetrics also the double quote.
    static func help(_ value: String, format: ExpositionFormat) -> [UInt8] {
        escape(value, quote: format == .openMetrics)
    }

    private static func escape(_ value: String, quote: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\"") where quote: out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            default: out.append(byte)
            }
        }
        return out
    }

    /// Reads back the labels `labelText` rendered: the series table keeps only the rendered bytes, and
    /// the rare caller that needs the labels themselves (a derived `_peak` series, to hash its identity
    /// exactly as a declaration's) recovers them here rather than have every series store them twice.
    /// Only for bytes `labelText` produced: names hold no `=`, values are quoted and escaped.
    static func labels(fromText text: ArraySlice<UInt8>) -> [Label] {
        var labels: [Label] = []
        var position = text.startIndex
        while position < text.endIndex {
            if text[position] == UInt8(ascii: ",") { position += 1 }
            guard let equals = text[position...].firstIndex(of: UInt8(ascii: "=")) else { break }
            let name = String(decoding: text[position..<equals], as: UTF8.self)
            // Skip `="`, then read to the closing quote, undoing the escapes.
            position = equals + 2
            var value: [UInt8] = []
            while position < text.endIndex, text[position] != UInt8(ascii: "\"") {
                if text[position] == UInt8(ascii: "\\"), position + 1 < text.endIndex {
                    position += 1
                    value.append(text[position] == UInt8(ascii: "n") ? UInt8(ascii: "\n") : text[position])
                } else {
                    value.append(text[position])
                }
                position += 1
            }
            position += 1
            labels.append(Label(name, String(decoding: value, as: UTF8.self)))
        }
        return labels
    }

    /// Renders `name="value",...` for a list of labels, escaped, without braces.
    static func labelText(_ labels: [Label]) -> [UInt8] {
        var out: [UInt8] = []
        for (index, label) in labels.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out += Array(label.name.utf8)
            out += [UInt8(ascii: "="), UInt8(ascii: "\"")]
            out += labelValue(label.value)
            out.append(UInt8(ascii: "\""))
        }
        return out
    }
}

/// Bucket bounds as `le` label values.
enum BucketBound {
    /// `bound` as OpenMetrics' canonical numbers write it (Go's `%g` with the shortest digits, as
    /// client_golang and client_python write `le`): the shortest round-tripping decimal, in exponent form
    /// below 1e-4 and from 1e6 up (`1e+06`, `2.5e+07`), an integer with `.0`. OpenMetrics requires the
    /// canonical form for `le`; with `description`, a bound of 1e6 was `1000000.0`, a different label
    /// value from every other exporter's `1e+06`, so `sum by (le)` across exporters split the bucket.
    static func text(_ bound: Double) -> String {
        let text = bound.description
        // `description` already matches Go below 1e6 (`100000.0`, `1e-05`) and from 2^53 up (`1e+16`).
        guard bound.isFinite, abs(bound) >= 1e6, !text.contains("e") else { return text }
        let negative = bound < 0
        let unsigned = negative ? text.dropFirst() : Substring(text)
        let parts = unsigned.split(separator: ".", maxSplits: 1)
        let integer = parts[0]
        let fraction = parts.count > 1 && parts[1] != "0" ? parts[1] : ""
        var digits = Array(integer + fraction)
        while digits.count > 1, digits.last == "0" { digits.removeLast() }
        let exponent = integer.count - 1
        let mantissa = String(digits[0]) + (digits.count > 1 ? "." + String(digits[1...]) : "")
        return (negative ? "-" : "") + mantissa + "e+" + (exponent < 10 ? "0" : "") + String(exponent)
    }
}
