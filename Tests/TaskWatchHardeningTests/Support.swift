import Foundation
import Glibc
import TaskWatchTestSupport
import Testing

/// The HTTP port a `taskwatchd` started with `--web.listen-address 127.0.0.1:0` logged.
func loggedPort(_ daemon: ChildProcess, timeout: Duration = .seconds(15)) -> UInt16? {
    var port: UInt16?
    _ = eventually(timeout: timeout) {
        guard let range = daemon.log.range(of: " ports=") else { return false }
        port = UInt16(daemon.log[range.upperBound...].prefix { $0.isNumber })
        return port != nil
    }
    return port
}

/// A response as curl saw it: the status line and headers as text, then the body.
struct CurlResponse {
    var status: Int
    var headers: String
    var body: String
}

/// Requests `url` with curl; `-i` puts the status line and headers in front of the body.
func curl(_ url: String, _ extraArguments: [String] = []) throws -> CurlResponse {
    let result = try runProcess("/usr/bin/curl", ["-sS", "-i", "--max-time", "20"] + extraArguments + [url])
    let output = result.outputText
    guard result.status == 0, let split = output.range(of: "\r\n\r\n") else {
        return CurlResponse(status: 0, headers: result.errorOutput, body: "")
    }
    let head = String(output[..<split.lowerBound])
    let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return CurlResponse(status: status, headers: head, body: String(output[split.upperBound...]))
}

/// The value of the first sample whose line starts with `series` (name and, optionally, the opening
/// of its labels) and contains every string in `containing`.
func sample(_ body: String, _ series: String, containing: [String] = []) -> Double? {
    for line in body.split(separator: "\n") where line.hasPrefix(series) && !line.hasPrefix("#") {
        guard containing.allSatisfy({ line.contains($0) }) else { continue }
        if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { return value }
    }
    return nil
}

/// A self-signed P-256 certificate for 127.0.0.1, `server.crt` and `server.key` in `directory`.
func makeCertificate(in directory: ScratchDirectory) throws {
    try TestCertificates.selfSigned("server", in: directory, subjectAltName: "IP:127.0.0.1,DNS:localhost")
}
