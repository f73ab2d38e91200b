/// Encodes frames. Lists that do not fit one frame are split across as many frames as they need,
/// each at most `Wire.maxFrameSize` bytes.
public enum FrameEncoder {
    /// Encodes a hello frame.
    public static func hello(_ hello: Hello) -> [UInt8] {
        var writer = FrameWriter(kind: .hello)
        writer.append(hello.claimedPID)
        writer.append(hello.intervalNanoseconds)
        writer.append(string: hello.process)
        writer.append(string: hello.clientVersion)
        writer.append(labels: hello.labels)
        return writer.bytes
    }

    /// Encodes a goodbye frame.
    public static func goodbye() -> [UInt8] {
        FrameWriter(kind: .goodbye).bytes
    }

    /// Encodes declarations into as few frames as fit.
    public static func declare(_ declarations: [SeriesDeclaration]) -> [[UInt8]] {
        chunked(.declare, declarations, size: Self.encodedSize(of:)) { writer, declaration in
            writer.append(declaration.id)
            writer.append(declaration.type.rawValue)
            writer.append(string: declaration.name)
            writer.append(string: declaration.help)
            writer.append(labels: declaration.labels)
            writer.append(UInt16(clamping: declaration.bounds.count))
            for bound in declaration.bounds { writer.append(bound.bitPattern) }
        }
    }

    /// Encodes counter and gauge values into as few frames as fit.
    public static func values(_ updates: [ValueUpdate]) -> [[UInt8]] {
        chunked(.values, updates, size: { _ in ValueEntries.entrySize }) { writer, update in
            writer.append(update.id)
            writer.append(update.value.bitPattern)
        }
    }

    /// Encodes histogram states into as few frames as fit.
    public static func histograms(_ updates: [HistogramUpdate]) -> [[UInt8]] {
        chunked(.histograms, updates, size: { 4 + 2 + 8 * $0.buckets.count + 8 }) { writer, update in
            writer.append(update.id)
            writer.append(UInt16(clamping: update.buckets.count))
            for count in update.buckets { writer.append(count) }
            writer.append(update.sum.bitPattern)
        }
    }

    /// Encodes peak samples into as few frames as fit.
    public static func peaks(_ samples: [PeakSample]) -> [[UInt8]] {
        chunked(.peaks, samples, size: { _ in ValueEntries.entrySize }) { writer, sample in
            writer.append(sample.id)
            writer.append(sample.value.bitPattern)
        }
    }

    /// Encodes series ids to retire into as few frames as fit.
    public static func retire(_ ids: [UInt32]) -> [[UInt8]] {
        chunked(.retire, ids, size: { _ in 4 }) { writer, id in writer.append(id) }
    }

    /// Encodes any frame; lists too long for one frame yield several.
    public static func encode(_ frame: Frame) -> [[UInt8]] {
        switch frame {
        case .hello(let hello): [Self.hello(hello)]
        case .declare(let list): declare(list)
        case .values(let list): values(list)
        case .histograms(let list): histograms(list)
        case .peaks(let list): peaks(list)
        case .goodbye: [goodbye()]
        case .retire(let ids): retire(ids)
        }
    }

    /// The bytes `declaration` takes in a declare frame, header and entry count not included.
    public static func encodedSize(of declaration: SeriesDeclaration) -> Int {
        let labels = declaration.labels.reduce(2) { $0 + 4 + $1.name.utf8.count + $1.value.utf8.count }
        return 4 + 1 + 2 + declaration.name.utf8.count + 2 + declaration.help.utf8.count + labels + 2
            + 8 * declaration.bounds.count
    }

    private static func chunked<Element>(
        _ kind: FrameKind,
        _ elements: [Element],
        size: (Element) -> Int,
        write: (inout FrameWriter, Element) -> Void
    ) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var index = 0
        while index < elements.count {
            var writer = FrameWriter(kind: kind)
            writer.append(UInt16(0))  // count, patched below
            var count = 0
            // An element that cannot fit even alone still goes out alone; the receiver refuses it.
            while index < elements.count, count < Int(UInt16.max),
                count == 0 || writer.bytes.count + size(elements[index]) <= Wire.maxFrameSize
            {
                write(&writer, elements[index])
                index += 1
                count += 1
            }
            writer.patchCount(UInt16(count))
            frames.append(writer.bytes)
        }
        return frames
    }
}

/// Appends little-endian fields after a frame header.
public struct FrameWriter {
    /// The frame so far.
    public private(set) var bytes: [UInt8]

    /// Starts a frame of `kind` with its header.
    public init(kind: FrameKind, capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
        append(Wire.magic)
        append(Wire.version)
        append(kind.rawValue)
        append(UInt16(0))
    }

    /// Appends an integer in little-endian order.
    public mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends a 16-bit length and the UTF-8 bytes, cut at 65,535 bytes.
    public mutating func append(string: String) {
        let utf8 = Wire.prefix(string, utf8Limit: Int(UInt16.max)).utf8
        append(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Appends a label count followed by name and value strings.
    public mutating func append(labels: [Label]) {
        append(UInt16(clamping: labels.count))
        for label in labels {
            append(string: label.name)
            append(string: label.value)
        }
    }

    mutating func patchCount(_ count: UInt16) {
        bytes[Wire.headerSize] = UInt8(truncatingIfNeeded: count)
        bytes[Wire.headerSize + 1] = UInt8(truncatingIfNeeded: count >> 8)
    }
}
