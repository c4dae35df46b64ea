// `mnist keygen`: the CURVE keys that make a cluster private, and `--keys` / `--insecure`, the options
// that use them. Where each file goes is in the README's "Security" section.
import ArgumentParser
import Foundation
import Training

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the CURVE keys that encrypt a cluster and let in only its workers.",
        discussion: """
            Writes coordinator.public/.secret and worker.public/.secret into DIR (secret files mode 0600), \
            and worker-NAME.public/.secret for each --worker NAME. Keys already there are kept, so running it \
            again only adds what is missing. The coordinator's machine needs the whole folder; a worker's \
            needs coordinator.public and its own worker secret, never coordinator.secret. The coordinator lets \
            in the holder of every worker*.public key in its folder: delete a worker's .public to shut it out.
            """)

    @Argument(help: ArgumentHelp("The folder to write the keys to (made mode 0700).", valueName: "dir"))
    var directory: String

    @Option(
        name: .customLong("worker"),
        help: ArgumentHelp("Also make a key of its own for worker NAME (repeatable).", valueName: "name"))
    var workers: [String] = []

    func validate() throws {
        for name in workers where !KeyFolder.isValidWorkerName(name) {
            throw ValidationError("--worker: '\(name)' must be 1-64 letters, digits, '.', '-' or '_'")
        }
    }

    func run() throws {
        let folder = KeyFolder(url: URL(fileURLWithPath: directory, isDirectory: true))
        let written = try folder.generate(workerNames: workers)
        let kept = ([KeyFolder.coordinator, KeyFolder.sharedWorker] + workers.map { "worker-\($0)" })
            .filter { !written.contains($0) }
        for name in written { print("wrote \(directory)/\(name).public and \(name).secret") }
        for name in kept { print("kept \(directory)/\(name).secret (already there)") }
        print(
            """
            coordinator:  mnist coordinator --keys \(directory) ...   (the whole folder)
            each worker:  mnist worker --keys DIR ...   (DIR holds coordinator.public and one worker*.secret)
            """)
    }
}

/// `--keys` and `--insecure` of the commands that run a coordinator.
struct CoordinatorSecurityOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Folder of CURVE keys from `mnist keygen`: traffic is encrypted and only workers with a key there join.",
            valueName: "dir"))
    var keys: String?

    @Flag(help: "Accept any peer that reaches a non-loopback --bind, unencrypted (only on a network you trust).")
    var insecure = false

    /// Refuses a tcp endpoint reachable from other machines without keys, unless --insecure says so.
    func validate(bind endpoint: String) throws {
        if keys != nil && insecure { throw ValidationError("--keys and --insecure exclude each other") }
        guard keys == nil, !insecure, !isLocalEndpoint(endpoint) else { return }
        throw ValidationError(
            """
            --bind \(endpoint) would let anyone who reaches the port join the run and read the training set. \
            Make keys with `mnist keygen keys` and pass --keys keys here and to every worker (see the README's \
            Security section), bind to 127.0.0.1, or pass --insecure on a network you trust.
            """)
    }

    /// The coordinator's keys, or nil without --keys.
    func security() throws -> CoordinatorSecurity? {
        try keys.map { try KeyFolder(url: URL(fileURLWithPath: $0, isDirectory: true)).coordinatorSecurity() }
    }
}

/// Whether only this machine can reach `endpoint`: ipc, inproc, or tcp on a loopback address.
func isLocalEndpoint(_ endpoint: String) -> Bool {
    guard endpoint.hasPrefix("tcp://") else { return true }
    let address = endpoint.dropFirst("tcp://".count)
    guard let colon = address.lastIndex(of: ":") else { return false }
    let host = address[..<colon]
    return host == "localhost" || host == "lo" || host == "[::1]" || host == "::1" || host.hasPrefix("127.")
}
