// In-memory image sets: the training and test images with their labels, as read from IDX files.
// Reading, validation and fetching live in their own files; this one only holds the data.
import Foundation

/// A set of greyscale images with one label each, stored as bytes exactly as in the IDX files.
public struct LabeledImages: Sendable, Equatable {
    /// Image height in pixels (28 for MNIST).
    public let rows: Int
    /// Image width in pixels (28 for MNIST).
    public let columns: Int
    /// Pixels, row-major, one byte each, 0 = background: `[count, rows, columns]`.
    public var pixels: [UInt8]
    /// Class labels 0...9: `[count]`.
    public var labels: [UInt8]

    /// The number of images.
    public var count: Int { labels.count }
    /// Pixels in one image (rows * columns).
    public var pixelsPerImage: Int { rows * columns }

    public init(rows: Int, columns: Int, pixels: [UInt8], labels: [UInt8]) {
        precondition(pixels.count == rows * columns * labels.count, "pixels must hold rows*columns bytes per label")
        self.rows = rows
        self.columns = columns
        self.pixels = pixels
        self.labels = labels
    }

    /// The images at `indices`, in that order.
    public func subset<Indices: Collection>(_ indices: Indices) -> LabeledImages where Indices.Element == Int {
        var pixels = [UInt8]()
        pixels.reserveCapacity(indices.count * pixelsPerImage)
        var labels = [UInt8]()
        labels.reserveCapacity(indices.count)
        for index in indices {
            pixels.append(contentsOf: self.pixels[(index * pixelsPerImage)..<((index + 1) * pixelsPerImage)])
            labels.append(self.labels[index])
        }
        return LabeledImages(rows: rows, columns: columns, pixels: pixels, labels: labels)
    }
}

/// The training and test sets of one dataset folder.
public struct MNISTData: Sendable {
    public var train: LabeledImages
    public var test: LabeledImages

    public init(train: LabeledImages, test: LabeledImages) {
        self.train = train
        self.test = test
    }
}
