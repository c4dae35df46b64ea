// The folder of CURVE keys that `mnist keygen` writes and `--keys` reads. One key per pair of files,
// Z85 text: NAME.public (mode 0644) and NAME.secret (mode 0600). The coordinator's pair is
// "coordinator"; workers' pairs are "worker" (shared) and "worker-NAME" (one per worker). The
// coordinator lets in the holders of every worker*.public key in its folder; a worker needs its own
// secret and coordinator.public, never the coordinator's secret.
import Foundation
import ZeroMQ

/// What a coordinator needs: its own key pair and the worker keys it lets in.
public struct CoordinatorSecurity: Sendable {
    public var keyPair: CurveKeyPair
    /// Allowed worker public keys (Z85), each with the name of its key file, for logs.
    public var allowedWorkers: [String: String]

    public init(keyPair: CurveKeyPair, allowedWorkers: [String: String]) {
        self.keyPair = keyPair
        self.allowedWorkers = allowedWorkers
    }
}

/// What a worker needs: its own key pair and the coordinator's public key.
public struct WorkerSecurity: Sendable {
    public var keyPair: CurveKeyPair
    public var coordinatorPublicKey: String
    /// The name of the key pair's files, for logs.
    public var keyName: String

    public init(keyPair: CurveKeyPair, coordinatorPublicKey: String, keyName: String) {
        self.keyPair = keyPair
        self.coordinatorPublicKey = coordinatorPublicKey
        self.keyName = keyName
    }
}

/// A folder of keys as `mnist keygen` writes it.
public struct KeyFolder: Sendable {
    /// A key folder that cannot be used, with what to do about it.
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public static let coordinator = "coordinator"
    public static let sharedWorker = "worker"

    public let url: URL

    public init(url: URL) { self.url = url }

    /// Whether `name` may name a worker key: 1-64 letters, digits, dots, dashes and underscores.
    public static func isValidWorkerName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { byte in
                (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            } && name.first != "."
    }

    private func file(_ name: String, _ kind: String) -> URL { url.appendingPathComponent("\(name).\(kind)") }

    // MARK: Writing

    /// Writes the key pairs that are missing: the coordinator's, the shared worker pair, and one
    /// `worker-NAME` pair per name. Never replaces a key. Returns the names of the pairs written.
    @discardableResult
    public func generate(workerNames: [String] = []) throws -> [String] {
        for name in workerNames where !Self.isValidWorkerName(name) {
            throw Problem(description: "'\(name)' cannot name a worker key: use 1-64 letters, digits, '.', '-', '_'")
        }
        try FileManager.default.createDirectory(
            at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var written: [String] = []
        for name in [Self.coordinator, Self.sharedWorker] + workerNames.map({ "worker-\($0)" }) {
            let secret = file(name, "secret"), publicFile = file(name, "public")
            if FileManager.default.fileExists(atPath: secret.path) {
                // Keep the key; restore its public half if that was lost.
                if !FileManager.default.fileExists(atPath: publicFile.path) {
                    let pair = try readPair(name)
                    try write(pair.publicKey, to: publicFile, mode: 0o644)
                }
                continue
            }
            let pair = try CurveKeyPair.generate()
            try write(pair.secretKey, to: secret, mode: 0o600)
            try write(pair.publicKey, to: publicFile, mode: 0o644)
            written.append(name)
        }
        return written
    }

    /// Writes `key` and a newline to a new file of `mode`, then moves it into place.
    private func write(_ key: String, to target: URL, mode: mode_t) throws {
        let temporary = url.appendingPathComponent(".\(target.lastPathComponent).\(getpid()).tmp")
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw Problem(description: "cannot create \(temporary.path): \(String(cString: strerror(errno)))")
        }
        let bytes = Array((key + "\n").utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == bytes.count, synced, rename(temporary.path, target.path) == 0 else {
            unlink(temporary.path)
            throw Problem(description: "cannot write \(target.path): \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Reading

    /// The coordinator's key pair and the worker keys it lets in (every worker*.public here).
    public func coordinatorSecurity() throws -> CoordinatorSecurity {
        let pair = try readPair(Self.coordinator)
        var allowed: [String: String] = [:]
        for name in try names(ending: ".public") where name == Self.sharedWorker || name.hasPrefix("worker-") {
            allowed[try readKey(file(name, "public"))] = name
        }
        guard !allowed.isEmpty else {
            throw Problem(
                description: "\(url.path) holds no worker public key (worker.public or worker-NAME.public), so no "
                    + "worker could join: run `mnist keygen \(url.path)`")
        }
        return CoordinatorSecurity(keyPair: pair, allowedWorkers: allowed)
    }

    /// A worker's key pair and the coordinator's public key. The pair is worker-NAME's if that secret
    /// is here, else the shared worker key's, else the only worker secret here.
    public func workerSecurity(name: String) throws -> WorkerSecurity {
        let coordinatorKey = try readKey(file(Self.coordinator, "public"))
        let secrets = try names(ending: ".secret").filter { $0 == Self.sharedWorker || $0.hasPrefix("worker-") }
        let chosen: String
        if secrets.contains("worker-\(name)") {
            chosen = "worker-\(name)"
        } else if secrets.contains(Self.sharedWorker) {
            chosen = Self.sharedWorker
        } else if secrets.count == 1 {
            chosen = secrets[0]
        } else if secrets.isEmpty {
            throw Problem(
                description: "\(url.path) holds no worker secret key (worker.secret or worker-NAME.secret): copy "
                    + "one there from the folder `mnist keygen` wrote")
        } else {
            throw Problem(
                description: "\(url.path) holds several worker keys (\(secrets.sorted().joined(separator: ", "))) and "
                    + "no worker.secret: pass --name NAME to use worker-NAME.secret, or keep one")
        }
        return WorkerSecurity(keyPair: try readPair(chosen), coordinatorPublicKey: coordinatorKey, keyName: chosen)
    }

    private func names(ending suffix: String) throws -> [String] {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: url.path)
        } catch {
            throw Problem(
                description: "cannot read the keys folder \(url.path): \(error.localizedDescription); make one with "
                    + "`mnist keygen \(url.path)`")
        }
        return entries.filter { $0.hasSuffix(suffix) && !$0.hasPrefix(".") }.map { String($0.dropLast(suffix.count)) }
            .sorted()
    }

    /// The pair of NAME.secret, which must be readable by its owner only.
    private func readPair(_ name: String) throws -> CurveKeyPair {
        let secret = file(name, "secret")
        var status = stat()
        guard stat(secret.path, &status) == 0 else {
            throw Problem(
                description: "\(secret.path) is missing: make keys with `mnist keygen \(url.path)`"
                    + (name == Self.coordinator ? "" : " and copy the worker's secret key there"))
        }
        guard status.st_mode & 0o077 == 0 else {
            throw Problem(
                description:
                    "\(secret.path) may be read by other users (mode \(String(status.st_mode & 0o777, radix: 8))): "
                    + "run `chmod 600 \(secret.path)`")
        }
        do {
            return try CurveKeyPair(secretKey: try readKey(secret))
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem(description: "\(secret.path) does not hold a CURVE secret key: \(error)")
        }
    }

    /// The Z85 key in a file (surrounding white space ignored).
    private func readKey(_ file: URL) throws -> String {
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw Problem(
                description: "cannot read \(file.path): \(error.localizedDescription); make keys with "
                    + "`mnist keygen \(url.path)`")
        }
        let text = String(decoding: data.prefix(256), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard data.count <= 256, CurveKey.isValid(text) else {
            throw Problem(description: "\(file.path) does not hold a CURVE key (40 characters of Z85 text)")
        }
        return text
    }
}
