// Options shared by several subcommands, and the logging set-up they all use.
import ArgumentParser
import Foundation
import Logging
import MNIST

/// `--data DIR`: the folder holding the dataset, with the same default everywhere.
struct DataOptions: ParsableArguments {
    @Option(
        name: .customLong("data"),
        help: ArgumentHelp(
            "Folder with the four IDX files, raw or .gz.",
            discussion: "Default: $MNIST_DATA, else ${XDG_CACHE_HOME:-$HOME/.cache}/mnist.",
            valueName: "dir"))
    var directory: String?

    /// The dataset folder these options name.
    var folder: DatasetFolder {
        DatasetFolder(url: directory.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? DatasetFolder.defaultURL())
    }

    /// Loads and validates the dataset, logging file hashes for folders that are not pinned.
    func load(logger: Logger) throws -> MNISTData {
        let start = Date()
        let data = try folder.load { logger.info("\($0)") }
        logger.debug(
            "loaded \(data.train.count) training and \(data.test.count) test images in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
        return data
    }
}

/// `--verbose` / `--quiet`: how much goes to standard error.
struct LoggingOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Log debug detail to standard error.")
    var verbose = false

    @Flag(name: .shortAndLong, help: "Log only warnings and errors.")
    var quiet = false

    func validate() throws {
        if verbose && quiet { throw ValidationError("--verbose and --quiet exclude each other") }
    }

    /// A logger writing to standard error at the chosen level.
    func makeLogger(label: String) -> Logger {
        LoggingSystem.bootstrapOnce()
        var logger = Logger(label: label)
        logger.logLevel = verbose ? .debug : quiet ? .warning : .info
        return logger
    }
}

extension LoggingSystem {
    private static let bootstrapped: Void = LoggingSystem.bootstrap(StandardErrorLogHandler.init)

    /// Sends every logger to standard error, once per process.
    static func bootstrapOnce() { _ = bootstrapped }
}

/// A log handler printing `LEVEL message` lines to standard error, without timestamps on a terminal.
struct StandardErrorLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let prefix: String
        switch event.level {
        case .warning: prefix = "warning: "
        case .error, .critical: prefix = "error: "
        case .debug, .trace: prefix = "debug: "
        default: prefix = ""
        }
        Terminal.standardError.writeLine(prefix + event.message.description)
    }
}

/// Writing to the terminal: whole lines, and a status line that redraws in place on a TTY.
// @unchecked Sendable: `hasStatus` and every write happen under `lock`; the rest is immutable.
final class Terminal: @unchecked Sendable {
    static let standardError = Terminal(descriptor: 2)
    let descriptor: Int32
    let isInteractive: Bool
    private let lock = NSLock()
    private var hasStatus = false

    init(descriptor: Int32) {
        self.descriptor = descriptor
        isInteractive = isatty(descriptor) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    /// Writes a line, clearing the status line first if one is showing.
    func writeLine(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        write((hasStatus ? "\r\u{1b}[K" : "") + text + "\n")
        hasStatus = false
    }

    /// Redraws the status line (only on a terminal).
    func status(_ text: String) {
        guard isInteractive else { return }
        lock.lock()
        defer { lock.unlock() }
        write("\r\u{1b}[K" + text)
        hasStatus = true
    }

    /// Ends the status line, leaving it on screen.
    func endStatus() {
        lock.lock()
        defer { lock.unlock() }
        if hasStatus { write("\n") }
        hasStatus = false
    }

    private func write(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(descriptor, base + offset, buffer.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
