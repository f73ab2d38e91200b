import Glibc
import TaskWatchDaemon
import TaskWatchWire

/// One input is a connection's worth of messages: each a little-endian UInt16 length and that many
/// bytes (a short last chunk takes what is left). Every message is decoded on its own, then fed to a
/// fresh registry as one connected client's frames, and the registry is rendered in both formats.
/// Nothing may trap, and the rendering must stay well-formed text.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var messages: [UnsafeRawBufferPointer] = []
    var offset = 0
    while offset + 2 <= input.count, messages.count < 64 {
        let length = Int(input[offset]) | Int(input[offset + 1]) << 8
        let start = offset + 2
        let end = min(input.count, start + length)
        messages.append(UnsafeRawBufferPointer(rebasing: input[start..<end]))
        offset = end
    }
    var limits = RegistryLimits()
    limits.maxSeries = 2_000
    limits.maxSeriesPerClient = 1_000
    let registry = Registry(limits: limits)
    let peer = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
    let connection = ConnectionID(1)
    guard registry.connectionOpened(connection, peer: peer) else { return 0 }
    for message in messages {
        _ = try? FrameDecoder.decode(message)
        let truncated = message.count > Wire.maxFrameSize
        if registry.frameReceived(connection, bytes: message, truncated: truncated) == .disconnect { break }
    }
    let exporter = Exporter(
        registry: registry, build: BuildInfo(version: "fuzz", revision: "fuzz", swiftVersion: "6"))
    for format in [ExpositionFormat.text, .openMetrics] {
        let body = exporter.render(format)
        // The exposition is UTF-8 text: a decoder that let invalid bytes through would show here.
        if String(validating: body, as: UTF8.self) == nil { abort() }
    }
    registry.connectionClosed(connection)
    return 0
}
