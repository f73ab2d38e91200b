import Foundation

/// A private directory under /tmp with a short path (a socket path must fit sun_path's 108 bytes),
/// removed with everything in it when the last reference goes.
public final class ScratchDirectory: Sendable {
    public let path: String

    /// Creates the directory with `mode` (mkdtemp's 0700 by default).
    public init(mode: mode_t = 0o700) {
        var template = Array("/tmp/tw.XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(created != nil, "mkdtemp failed")
        path = String(cString: created!)
        chmod(path, mode)
    }

    /// The path of `name` inside this directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to the file `name` in this directory.
    public func write(_ name: String, _ text: String) throws {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
