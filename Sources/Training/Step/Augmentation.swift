// Random affine transforms of training images: rotation, scale, shear and shift, sampled bilinearly.
// Each image's transform is drawn from (run seed, epoch, sample key), so a sample is varied the same
// way on whichever node computes it, and a run stays bit-identical for any worker count. With
// rotation, scale and shear all 0 and a whole-pixel shift, images are shifted by whole pixels (the
// augmentation of earlier versions, kept bit for bit so their checkpoints resume unchanged).
import ConvNet
import Foundation

/// How much each training image may be rotated, scaled, sheared and shifted; each amount is drawn
/// uniformly from [-limit, limit] per image.
public struct Augmentation: Sendable, Equatable {
    /// Largest translation, in pixels, along each axis.
    public var shift: Double
    /// Largest rotation, in degrees, either way.
    public var rotation: Double
    /// Largest relative change of size: the factor is in [1 - scale, 1 + scale].
    public var scale: Double
    /// Largest horizontal shear, in degrees, either way.
    public var shear: Double

    public init(shift: Double = 2, rotation: Double = 0, scale: Double = 0, shear: Double = 0) {
        self.shift = shift
        self.rotation = rotation
        self.scale = scale
        self.shear = shear
    }

    /// Whole-pixel shifts only: no sampling between pixels is needed.
    public var isWholePixelShift: Bool {
        rotation == 0 && scale == 0 && shear == 0 && shift == shift.rounded()
    }

    /// The map from an output pixel `(x, y)` to the point of the source image it shows:
    /// `source = (a x + b y + c, d x + e y + f)`, pixel centres at whole coordinates.
    public struct SourceMap: Equatable, Sendable {
        public var a, b, c, d, e, f: Double
    }

    /// The transform of the image with key `key`, in the epoch whose seed is `epochSeed`
    /// (`TrainingSeeds.augmentation`), for images of `rows` x `columns`.
    ///
    /// Five uniform draws in [-1, 1) from `SplitMix64(derivedSeed(epochSeed, key))`, in this order:
    /// rotation angle, scale factor, shear angle, shift x, shift y. The image is sheared, scaled and
    /// rotated about its centre, then shifted; a positive angle turns the digit clockwise on screen
    /// (y grows downwards), a positive shift moves it right or down.
    public func sourceMap(key: Int, epochSeed: UInt64, rows: Int, columns: Int) -> SourceMap {
        var generator = SplitMix64(seed: SplitMix64.derivedSeed(epochSeed, UInt64(bitPattern: Int64(key))))
        func draw() -> Double { generator.nextUnitDouble() * 2 - 1 }
        let angle = draw() * rotation * Double.pi / 180
        let factor = 1 + draw() * scale
        let shearAngle = draw() * shear * Double.pi / 180
        let shiftX = draw() * shift, shiftY = draw() * shift
        // Forward: p' = centre + shift + factor · R(angle) · [[1, tan(shear)], [0, 1]] · (p − centre).
        // Its inverse, for each output pixel: p = centre + Sh⁻¹ R⁻¹ (p' − centre − shift) / factor.
        let cosine = cos(angle), sine = sin(angle), slant = tan(shearAngle)
        // R⁻¹ = [[cos, sin], [−sin, cos]]; Sh⁻¹ = [[1, −slant], [0, 1]].
        let r00 = cosine, r01 = sine, r10 = -sine, r11 = cosine
        let a = (r00 - slant * r10) / factor, b = (r01 - slant * r11) / factor
        let d = r10 / factor, e = r11 / factor
        let centreX = Double(columns - 1) / 2, centreY = Double(rows - 1) / 2
        let offsetX = -centreX - shiftX, offsetY = -centreY - shiftY
        return SourceMap(
            a: a, b: b, c: centreX + a * offsetX + b * offsetY,
            d: d, e: e, f: centreY + d * offsetX + e * offsetY)
    }

    /// The whole-pixel shift of the image with key `key` (`isWholePixelShift` only): each of dx, dy in
    /// `-shift...shift`, from the bits of `finalize(derivedSeed(epochSeed, key))` as earlier versions drew them.
    public func wholePixelShift(key: Int, epochSeed: UInt64) -> (x: Int, y: Int) {
        let span = UInt64(2 * Int(shift) + 1)
        let bits = SplitMix64.finalize(SplitMix64.derivedSeed(epochSeed, UInt64(bitPattern: Int64(key))))
        return (Int(bits % span) - Int(shift), Int((bits >> 8) % span) - Int(shift))
    }

    /// Writes the normalised, transformed image of `pixels` (`rows * columns` bytes) into `output`.
    /// `table` maps a byte to its normalised value (`InputNormalization.table`); outside the source
    /// image the value is that of a 0 pixel.
    public func apply(
        pixels: UnsafeBufferPointer<UInt8>, rows: Int, columns: Int, key: Int, epochSeed: UInt64,
        table: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(pixels.count == rows * columns && output.count == rows * columns, "one image")
        let background = table[0]
        if isWholePixelShift {
            let (shiftX, shiftY) = wholePixelShift(key: key, epochSeed: epochSeed)
            for y in 0..<rows {
                let fromY = y - shiftY
                for x in 0..<columns {
                    let fromX = x - shiftX
                    let inside = fromY >= 0 && fromY < rows && fromX >= 0 && fromX < columns
                    output[y * columns + x] = inside ? table[Int(pixels[fromY * columns + fromX])] : background
                }
            }
            return
        }
        let map = sourceMap(key: key, epochSeed: epochSeed, rows: rows, columns: columns)
        let a = Float(map.a), b = Float(map.b), c = Float(map.c)
        let d = Float(map.d), e = Float(map.e), f = Float(map.f)
        /// The normalised value of source pixel (x, y), the background outside.
        func value(_ x: Int, _ y: Int) -> Float {
            guard x >= 0, x < columns, y >= 0, y < rows else { return background }
            return table[Int(pixels[y * columns + x])]
        }
        for y in 0..<rows {
            let rowX = b * Float(y) + c, rowY = e * Float(y) + f
            for x in 0..<columns {
                let sourceX = a * Float(x) + rowX, sourceY = d * Float(x) + rowY
                let left = sourceX.rounded(.down), top = sourceY.rounded(.down)
                let fx = sourceX - left, fy = sourceY - top
                // Far outside (and NaN-free: the map's entries are finite): the background.
                guard left > -2, top > -2, left < Float(columns), top < Float(rows) else {
                    output[y * columns + x] = background
                    continue
                }
                let x0 = Int(left), y0 = Int(top)
                let upper = (1 - fx) * value(x0, y0) + fx * value(x0 + 1, y0)
                let lower = (1 - fx) * value(x0, y0 + 1) + fx * value(x0 + 1, y0 + 1)
                output[y * columns + x] = (1 - fy) * upper + fy * lower
            }
        }
    }
}
