// Where the data lives and how a folder of IDX files becomes `MNISTData`.
// A folder holds the four standard names, each raw or gzip. The MNIST cache (the default folder, or
// any folder `mnist fetch` filled) is checked against the pins; any other folder is only validated,
// with the SHA-256 of each file reported for the record.
import Foundation

/// A folder that holds (or will hold) the four files of a 28x28, 10-class IDX dataset.
public struct DatasetFolder: Sendable {
    /// Name of the marker `mnist fetch` leaves in a folder it filled with the verified official files.
    public static let marker = ".mnist-verified"

    public let url: URL
    public let pins: DatasetPins

    public init(url: URL, pins: DatasetPins = .mnist) {
        self.url = url
        self.pins = pins
    }

    /// `$MNIST_DATA` if set, else `${XDG_CACHE_HOME:-$HOME/.cache}/mnist`.
    public static func defaultURL(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let explicit = environment["MNIST_DATA"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit, isDirectory: true)
        }
        let cache: String
        if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty {
            cache = xdg
        } else {
            cache = (environment["HOME"] ?? NSHomeDirectory()) + "/.cache"
        }
        return URL(fileURLWithPath: cache, isDirectory: true).appendingPathComponent("mnist", isDirectory: true)
    }

    /// Whether this folder is an MNIST cache whose files must match the pins.
    public var isPinned: Bool {
        url.standardizedFileURL.path == DatasetFolder.defaultURL().standardizedFileURL.path
            || FileManager.default.fileExists(atPath: url.appendingPathComponent(DatasetFolder.marker).path)
    }

    /// The path of `file` in this folder: the raw name if present, else the `.gz` name, else nil.
    public func existingPath(of file: DatasetFile) -> URL? {
        for name in [file.name, file.name + ".gz"] {
            let candidate = url.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    /// Reads, validates and (for a pinned folder) verifies the four files.
    /// - Parameter note: receives one line per file with its SHA-256, for the record.
    public func load(note: (String) -> Void = { _ in }) throws -> MNISTData {
        let missing = pins.files.filter { existingPath(of: $0) == nil }.map(\.name)
        guard missing.isEmpty else { throw DatasetFolderError.missingFiles(folder: url.path, names: missing) }
        let pinned = isPinned
        var contents: [Data] = []
        for file in pins.files {
            guard let path = existingPath(of: file) else { continue }
            let data = try IDX.contents(of: path)
            if pinned {
                try file.verify(data, source: path.path)
            } else {
                note("\(path.path): sha256 \(data.sha256Hex)")
            }
            contents.append(data)
        }
        return MNISTData(
            train: try pair(contents[0], contents[1], pins.trainImages, pins.trainLabels),
            test: try pair(contents[2], contents[3], pins.testImages, pins.testLabels))
    }

    private func pair(_ images: Data, _ labels: Data, _ imageFile: DatasetFile, _ labelFile: DatasetFile) throws
        -> LabeledImages
    {
        let imagesName = existingPath(of: imageFile)?.path ?? imageFile.name
        let set = try IDX.parsePair(
            images: images, imagesFile: imagesName, labels: labels,
            labelsFile: existingPath(of: labelFile)?.path ?? labelFile.name)
        guard set.rows == 28, set.columns == 28 else {
            throw IDXError.badDimensions(
                file: imagesName, reason: "images are \(set.rows)x\(set.columns), expected 28x28")
        }
        return set
    }
}

/// A folder that cannot serve as a dataset.
public enum DatasetFolderError: Error, Equatable, CustomStringConvertible {
    case missingFiles(folder: String, names: [String])

    public var description: String {
        switch self {
        case .missingFiles(let folder, let names):
            return "\(folder) lacks \(names.joined(separator: ", ")) (raw or .gz); "
                + "run `mnist fetch --data \(folder)` to download and verify MNIST there"
        }
    }
}
