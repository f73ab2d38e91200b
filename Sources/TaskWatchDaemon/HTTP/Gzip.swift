import CZlib

/// Why zlib refused to compress.
public struct GzipError: Error, CustomStringConvertible, Equatable {
    public var description: String
}

/// One-shot gzip compression with zlib.
public enum Gzip {
    /// Compresses `input` into one complete gzip member. Level 1 is the default because a scrape
    /// waits on it, and metric text compresses well even at the fastest level.
    public static func compress(_ input: [UInt8], level: Int32 = 1) throws(GzipError) -> [UInt8] {
        try input.withUnsafeBytes { bytes in Result { () throws(GzipError) in try compress(bytes, level: level) } }
            .get()
    }

    /// Compresses `input` into one complete gzip member.
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = 1) throws(GzipError) -> [UInt8] {
        guard (0...9).contains(level) else { throw GzipError(description: "gzip level must be 0...9, not \(level)") }
        var stream = z_stream()
        // windowBits 15 + 16 selects the gzip wrapper instead of zlib's own.
        let initialized = deflateInit2_(
            &stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)
        )
        guard initialized == Z_OK else { throw GzipError(description: "deflateInit2 failed (\(initialized))") }
        defer { deflateEnd(&stream) }

        // deflateBound lets a single Z_FINISH call finish. The capacity beyond the compressed size is
        // never written, so for large bodies those pages are never touched and cost no memory.
        let capacity = Int(deflateBound(&stream, uLong(input.count)))
        var failure: GzipError?
        let output = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
            count = 0
            var inputOffset = 0
            // zlib counts in 32-bit uInt, so inputs past 4 GiB go in slices.
            while true {
                let inputChunk = min(input.count - inputOffset, Int(UInt32.max))
                let outputChunk = min(capacity - count, Int(UInt32.max))
                stream.next_in = UnsafeMutablePointer(
                    mutating: input.baseAddress?.advanced(by: inputOffset).assumingMemoryBound(to: Bytef.self))
                stream.avail_in = uInt(inputChunk)
                stream.next_out = buffer.baseAddress?.advanced(by: count)
                stream.avail_out = uInt(outputChunk)
                let last = inputOffset + inputChunk == input.count
                let status = deflate(&stream, last ? Z_FINISH : Z_NO_FLUSH)
                inputOffset += inputChunk - Int(stream.avail_in)
                count += outputChunk - Int(stream.avail_out)
                if status == Z_STREAM_END { return }
                let stuck = last && count == capacity
                if (status != Z_OK && status != Z_BUF_ERROR) || stuck {
                    let message = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                    failure = GzipError(description: "deflate failed: \(message)")
                    return
                }
            }
        }
        if let failure { throw failure }
        return output
    }
}
