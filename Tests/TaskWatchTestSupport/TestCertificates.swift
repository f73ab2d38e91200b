/// A throwaway certificate authority made with openssl, and certificates it issues, for TLS tests:
/// files `NAME.crt` and `NAME.key` in `directory`, the authority's own as `ca.crt` and `ca.key`.
public struct TestCertificates: Sendable {
    /// Why openssl could not make a certificate.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let directory: ScratchDirectory

    /// Makes the authority (P-256, valid two days).
    public init(in directory: ScratchDirectory) throws {
        self.directory = directory
        try Self.openssl(
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=taskwatch test CA", "-keyout", directory.file("ca.key"), "-out", directory.file("ca.crt"),
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
    }

    /// Issues `NAME.crt` and `NAME.key`, signed by the authority, with the given extensions: for
    /// example `subjectAltName` `DNS:prometheus.example` and `extendedKeyUsage` `clientAuth`.
    public func issue(_ name: String, subjectAltName: String, extendedKeyUsage: String) throws {
        try Self.openssl(
            [
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                "/CN=\(name)", "-keyout", directory.file("\(name).key"), "-out", directory.file("\(name).csr"),
            ])
        try directory.write(
            "\(name).ext",
            "basicConstraints=CA:FALSE\nsubjectAltName=\(subjectAltName)\nextendedKeyUsage=\(extendedKeyUsage)\n")
        try Self.openssl(
            [
                "x509", "-req", "-in", directory.file("\(name).csr"), "-CA", directory.file("ca.crt"), "-CAkey",
                directory.file("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", directory.file("\(name).ext"),
                "-out", directory.file("\(name).crt"),
            ])
    }

    /// Makes a self-signed client certificate `NAME.crt` and `NAME.key` that no authority vouches for.
    public func selfSigned(_ name: String) throws {
        try Self.selfSigned(name, in: directory, subjectAltName: "DNS:\(name)", extendedKeyUsage: "clientAuth")
    }

    /// Makes a self-signed `NAME.crt` and `NAME.key` (P-256, valid two days) in `directory`, with the
    /// given `subjectAltName` and, when given, `extendedKeyUsage`; no authority needed.
    public static func selfSigned(
        _ name: String, in directory: ScratchDirectory, subjectAltName: String, extendedKeyUsage: String? = nil
    ) throws {
        try openssl(
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=\(name)", "-keyout", directory.file("\(name).key"), "-out", directory.file("\(name).crt"),
                "-addext", "subjectAltName=\(subjectAltName)",
            ] + (extendedKeyUsage.map { ["-addext", "extendedKeyUsage=\($0)"] } ?? []))
    }

    private static func openssl(_ arguments: [String]) throws {
        let result = try runProcess("/usr/bin/openssl", arguments)
        guard result.status == 0 else {
            throw Failure(description: "openssl \(arguments.prefix(2).joined(separator: " ")): \(result.errorOutput)")
        }
    }
}
