// Exact area-averaging (box filter) resampling of a float image, the scaling step of the MNIST
// preprocessing. Deliberately left out: other kernels (bilinear, Lanczos) and non-uniform scales.
import Foundation

/// Resampling by exact area averaging: each output pixel is the mean of the source image over the
/// output pixel's footprint, the source taken as constant over each pixel and 0 outside it.
///
/// The scaled image spans `width * scale` by `height * scale` output pixels; that extent is rounded
/// up to whole pixels and centred, so along a side whose scaled length is fractional the two edge
/// pixels are only partly covered and proportionally dimmer. Total ink is preserved exactly:
/// `sum(output) == sum(source) * scale^2` up to Float rounding. Because the box filter is a product
/// of two one-dimensional overlaps, the resampling is done as two separable passes with weight
/// tables built once per call.
public enum AreaResampler {
    /// The result of a resampling: `pixels` is `[height, width]`.
    public struct Result: Equatable, Sendable {
        public var width: Int
        public var height: Int
        public var pixels: [Float]
    }

    /// Resamples `pixels` (`[height, width]`) by `scale` (> 0) in both directions.
    public static func resample(_ pixels: [Float], width: Int, height: Int, scale: Double) -> Result {
        requireArgument(width > 0 && height > 0 && pixels.count == width * height, "pixels must be [height, width]")
        requireArgument(scale > 0 && scale.isFinite, "scale must be positive")
        let columns = weights(sourceCount: width, scale: scale)
        let rows = weights(sourceCount: height, scale: scale)
        let outWidth = columns.count
        let outHeight = rows.count
        // Horizontal pass: [height, outWidth].
        var horizontal = [Float](repeating: 0, count: height * outWidth)
        pixels.withUnsafeBufferPointer { source in
            horizontal.withUnsafeMutableBufferPointer { target in
                for y in 0..<height {
                    let sourceRow = y * width
                    for (x, taps) in columns.enumerated() {
                        var sum: Float = 0
                        for tap in taps { sum += tap.weight * source[sourceRow + tap.index] }
                        target[y * outWidth + x] = sum
                    }
                }
            }
        }
        // Vertical pass: [outHeight, outWidth].
        var output = [Float](repeating: 0, count: outHeight * outWidth)
        horizontal.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                for (y, taps) in rows.enumerated() {
                    for tap in taps {
                        let sourceRow = tap.index * outWidth
                        for x in 0..<outWidth { target[y * outWidth + x] += tap.weight * source[sourceRow + x] }
                    }
                }
            }
        }
        return Result(width: outWidth, height: outHeight, pixels: output)
    }

    /// One source pixel's share in an output pixel.
    struct Tap: Equatable {
        var index: Int
        var weight: Float
    }

    /// Per output pixel along one axis, the source pixels it overlaps and their weights
    /// (overlap length times `scale`, so a fully covered output pixel's weights sum to 1).
    static func weights(sourceCount: Int, scale: Double) -> [[Tap]] {
        let extent = Double(sourceCount) * scale
        // A hair of tolerance so that 20.000000000004 stays 20 pixels.
        let outCount = max(1, Int((extent - 1e-9).rounded(.up)))
        let margin = (Double(outCount) - extent) / 2
        var table = [[Tap]]()
        table.reserveCapacity(outCount)
        for output in 0..<outCount {
            // The output pixel's footprint in source coordinates, clipped to the source.
            let start = max(0, (Double(output) - margin) / scale)
            let end = min(Double(sourceCount), (Double(output) + 1 - margin) / scale)
            var taps = [Tap]()
            if end > start {
                let first = Int(start.rounded(.down))
                let last = min(sourceCount - 1, Int(end.rounded(.up)) - 1)
                for index in first...max(first, last) {
                    let overlap = min(end, Double(index + 1)) - max(start, Double(index))
                    if overlap > 0 { taps.append(Tap(index: index, weight: Float(overlap * scale))) }
                }
            }
            table.append(taps)
        }
        return table
    }
}
