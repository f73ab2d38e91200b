/// Why a frame was refused. `rawValue` is the `reason` label the daemon counts it under.
public enum WireError: String, Error, Sendable, CaseIterable {
    /// Fewer bytes than the header, or a field runs past the end of the frame.
    case truncated
    /// More than `Wire.maxFrameSize` bytes.
    case oversize
    /// The first four bytes are not the magic number.
    case badMagic = "bad_magic"
    /// A protocol version this decoder does not speak.
    case unsupportedVersion = "unsupported_version"
    /// An unknown kind byte, or reserved header bytes that are not zero.
    case unknownKind = "unknown_kind"
    /// Bytes left over after the last field.
    case trailingBytes = "trailing_bytes"
    /// A string that is not valid UTF-8.
    case invalidUTF8 = "invalid_utf8"
    /// A string longer than its limit, or too many labels, bounds or buckets.
    case tooLong = "too_long"
    /// An unknown series type byte.
    case unknownType = "unknown_type"
    /// Histogram bounds that are not finite and strictly increasing, or bounds on a non-histogram.
    case badBounds = "bad_bounds"
    /// A frame with no entries where entries are required.
    case empty
}

/// Decodes frames. Every length, count and byte is checked; it never traps, whatever the input.
public enum FrameDecoder {
    /// Decodes one frame from `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Frame {
        var reader = try open(bytes)
        let kind = reader.kind
        let frame: Frame
        switch kind {
        case .hello:
            frame = .hello(try reader.readHello())
        case .declare:
            let count = try reader.readCount()
            var declarations: [SeriesDeclaration] = []
            declarations.reserveCapacity(count)
            for _ in 0..<count { declarations.append(try reader.readDeclaration()) }
            frame = .declare(declarations)
        case .values:
            frame = .values(try ValueEntries(from: &reader).map { ValueUpdate(id: $0.id, value: $0.value) })
        case .histograms:
            let count = try reader.readCount()
            var updates: [HistogramUpdate] = []
            updates.reserveCapacity(count)
            for _ in 0..<count { updates.append(try reader.readHistogram()) }
            frame = .histograms(updates)
        case .peaks:
            frame = .peaks(try ValueEntries(from: &reader).map { PeakSample(id: $0.id, value: $0.value) })
        case .goodbye:
            frame = .goodbye
        case .retire:
            frame = .retire(try reader.readIDs())
        }
        try reader.finish()
        return frame
    }

    /// Decodes one frame from an array of bytes.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Frame {
        let result: Result<Frame, WireError> = bytes.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try decode(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Checks the header and returns a reader positioned at the body.
    public static func open(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> FrameReader {
        if bytes.count > Wire.maxFrameSize { throw .oversize }
        if bytes.count < Wire.headerSize { throw .truncated }
        var reader = FrameReader(bytes: bytes, kind: .goodbye)
        guard try reader.readUInt32() == Wire.magic else { throw .badMagic }
        guard try reader.readUInt8() == Wire.version else { throw .unsupportedVersion }
        let kindByte = try reader.readUInt8()
        guard let kind = FrameKind(rawValue: kindByte), try reader.readUInt16() == 0 else { throw .unknownKind }
        reader.kind = kind
        return reader
    }
}

/// The `(id, value)` entries of a `values` or `peaks` body, read in place without allocating: the
/// daemon's hot path.
public struct ValueEntries: RandomAccessCollection {
    /// The size of one `(id, value)` entry in bytes.
    public static let entrySize = 12

    private let base: UnsafeRawBufferPointer

    /// Checks that the rest of the frame holds exactly the announced number of entries.
    public init(from reader: inout FrameReader) throws(WireError) {
        let count = try reader.readCount()
        guard reader.remaining == count * Self.entrySize else {
            throw reader.remaining < count * Self.entrySize ? .truncated : .trailingBytes
        }
        base = try reader.take(count * Self.entrySize)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { base.count / Self.entrySize }

    public subscript(position: Int) -> (id: UInt32, value: Double) {
        let offset = position * Self.entrySize
        let id = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let bits = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self))
        return (id, Double(bitPattern: bits))
    }
}

/// A bounds-checked cursor over the bytes of one frame.
public struct FrameReader {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0
    /// The kind from the header.
    public internal(set) var kind: FrameKind

    init(bytes: UnsafeRawBufferPointer, kind: FrameKind) {
        self.bytes = bytes
        self.kind = kind
    }

    /// Bytes not yet read.
    public var remaining: Int { bytes.count - offset }

    /// Fails unless every byte was consumed.
    public func finish() throws(WireError) {
        if remaining != 0 { throw .trailingBytes }
    }

    mutating func take(_ n: Int) throws(WireError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw .truncated }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
    }

    mutating func readUInt8() throws(WireError) -> UInt8 {
        try take(1)[0]
    }

    mutating func readUInt16() throws(WireError) -> UInt16 {
        UInt16(littleEndian: try take(2).loadUnaligned(as: UInt16.self))
    }

    mutating func readUInt32() throws(WireError) -> UInt32 {
        UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self))
    }

    mutating func readUInt64() throws(WireError) -> UInt64 {
        UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self))
    }

    mutating func readDouble() throws(WireError) -> Double {
        Double(bitPattern: try readUInt64())
    }

    /// A 16-bit entry count; zero is refused because an empty frame is always a sender bug.
    mutating func readCount() throws(WireError) -> Int {
        let count = Int(try readUInt16())
        if count == 0 { throw .empty }
        return count
    }

    mutating func readString(limit: Int) throws(WireError) -> String {
        let length = Int(try readUInt16())
        if length > limit { throw .tooLong }
        let raw = try take(length)
        // Validate before decoding: `String(decoding:)` would silently repair bad bytes.
        guard let string = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8 }
        return string
    }

    mutating func readLabels() throws(WireError) -> [Label] {
        let count = Int(try readUInt16())
        if count > Wire.maxLabels { throw .tooLong }
        var labels: [Label] = []
        labels.reserveCapacity(count)
        for _ in 0..<count {
            let name = try readString(limit: Wire.maxNameLength)
            let value = try readString(limit: Wire.maxTextLength)
            labels.append(Label(name, value))
        }
        return labels
    }

    mutating func readHello() throws(WireError) -> Hello {
        let pid = try readUInt32()
        let interval = try readUInt64()
        let process = try readString(limit: Wire.maxTextLength)
        let version = try readString(limit: Wire.maxTextLength)
        let labels = try readLabels()
        if Wire.helloLabelBytes(labels) > Wire.maxHelloLabelBytes { throw .tooLong }
        return Hello(
            claimedPID: pid,
            intervalNanoseconds: interval,
            process: process,
            clientVersion: version,
            labels: labels
        )
    }

    mutating func readDeclaration() throws(WireError) -> SeriesDeclaration {
        let id = try readUInt32()
        guard let type = SeriesType(rawValue: try readUInt8()) else { throw .unknownType }
        let name = try readString(limit: Wire.maxNameLength)
        let help = try readString(limit: Wire.maxTextLength)
        let labels = try readLabels()
        let boundCount = Int(try readUInt16())
        if boundCount > Wire.maxBounds { throw .tooLong }
        if type != .histogram && boundCount != 0 { throw .badBounds }
        var bounds: [Double] = []
        bounds.reserveCapacity(boundCount)
        for _ in 0..<boundCount {
            let bound = try readDouble()
            guard bound.isFinite, bounds.last.map({ $0 < bound }) ?? true else { throw .badBounds }
            bounds.append(bound)
        }
        return SeriesDeclaration(id: id, type: type, name: name, help: help, labels: labels, bounds: bounds)
    }

    /// A `u16` count (at least 1), then exactly that many `u32` ids.
    mutating func readIDs() throws(WireError) -> [UInt32] {
        let count = try readCount()
        guard remaining == count * 4 else { throw remaining < count * 4 ? .truncated : .trailingBytes }
        var ids: [UInt32] = []
        ids.reserveCapacity(count)
        for _ in 0..<count { ids.append(try readUInt32()) }
        return ids
    }

    mutating func readHistogram() throws(WireError) -> HistogramUpdate {
        let id = try readUInt32()
        let bucketCount = Int(try readUInt16())
        if bucketCount == 0 { throw .empty }
        if bucketCount > Wire.maxBounds + 1 { throw .tooLong }
        guard bucketCount * 8 <= remaining else { throw .truncated }
        var buckets: [UInt64] = []
        buckets.reserveCapacity(bucketCount)
        for _ in 0..<bucketCount { buckets.append(try readUInt64()) }
        let sum = try readDouble()
        return HistogramUpdate(id: id, buckets: buckets, sum: sum)
    }
}
