// Random affine transforms of training images: rotation, scale, shear and shift, optionally with an
// elastic distortion (Simard, Steinkraus and Platt 2003), sampled bilinearly. Each image's transform
// is drawn from (run seed, epoch, sample key), so a sample is varied the same way on whichever node
// computes it, and a run stays bit-identical for any worker count. With rotation, scale, shear and the
// elastic strength all 0 and a whole-pixel shift, images are shifted by whole pixels (the augmentation
// of earlier versions, kept bit for bit so their checkpoints resume unchanged).
import ConvNet
import Foundation

/// How much each training image may be rotated, scaled, sheared and shifted; each amount is drawn
/// uniformly from [-limit, limit] per image. With `elastic` above 0, each image is also distorted by a
/// smooth random displacement field.
public struct Augmentation: Sendable, Equatable {
    /// Largest translation, in pixels, along each axis.
    public var shift: Double
    /// Largest rotation, in degrees, either way.
    public var rotation: Double
    /// Largest relative change of size: the factor is in [1 - scale, 1 + scale].
    public var scale: Double
    /// Largest horizontal shear, in degrees, either way.
    public var shear: Double
    /// Strength of the elastic distortion, in pixels (Simard's α): each displacement is `elastic` times a
    /// field of uniform draws in [-1, 1) smoothed by a Gaussian of `elasticSigma` pixels. 0: none.
    public var elastic: Double

    public init(shift: Double = 2, rotation: Double = 0, scale: Double = 0, shear: Double = 0, elastic: Double = 0) {
        self.shift = shift
        self.rotation = rotation
        self.scale = scale
        self.shear = shear
        self.elastic = elastic
    }

    /// The standard deviation, in pixels, of the Gaussian that smooths the elastic displacement field.
    public static let elasticSigma = 4.0
    /// The smoothing kernel: `exp(−k² / 2σ²)` for k in −3σ...3σ, divided by its sum (in Double), as Float.
    public static let elasticKernel: [Float] = {
        let radius = Int((3 * elasticSigma).rounded(.up))
        let weights = (-radius...radius).map { exp(-Double($0 * $0) / (2 * elasticSigma * elasticSigma)) }
        let sum = weights.reduce(0, +)
        return weights.map { Float($0 / sum) }
    }()

    /// Whole-pixel shifts only: no sampling between pixels is needed.
    public var isWholePixelShift: Bool {
        rotation == 0 && scale == 0 && shear == 0 && elastic == 0 && shift == shift.rounded()
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
        var generator = Self.generator(key: key, epochSeed: epochSeed)
        return sourceMap(drawingFrom: &generator, rows: rows, columns: columns)
    }

    /// The generator of the image with key `key`: its state starts at `derivedSeed(epochSeed, key)`.
    private static func generator(key: Int, epochSeed: UInt64) -> SplitMix64 {
        SplitMix64(seed: SplitMix64.derivedSeed(epochSeed, UInt64(bitPattern: Int64(key))))
    }

    private func sourceMap(drawingFrom generator: inout SplitMix64, rows: Int, columns: Int) -> SourceMap {
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
        var generator = Self.generator(key: key, epochSeed: epochSeed)
        let map = sourceMap(drawingFrom: &generator, rows: rows, columns: columns)
        guard elastic > 0 else {
            sample(pixels: pixels, rows: rows, columns: columns, map: map, table: table, output: output)
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * rows * columns) { scratch in
            let count = rows * columns
            let field = UnsafeMutableBufferPointer(rebasing: scratch[0..<(2 * count)])
            let smoothing = UnsafeMutableBufferPointer(rebasing: scratch[(2 * count)..<(4 * count)])
            displacements(drawingFrom: &generator, rows: rows, columns: columns, into: field, scratch: smoothing)
            sample(
                pixels: pixels, rows: rows, columns: columns, map: map,
                displacement: (
                    UnsafeBufferPointer(rebasing: field[0..<count]), UnsafeBufferPointer(rebasing: field[count...])
                ),
                table: table, output: output)
        }
    }

    /// The elastic displacements of the image with key `key` (after its five affine draws): x then y, each
    /// `rows * columns` values row by row.
    public func displacements(key: Int, epochSeed: UInt64, rows: Int, columns: Int) -> [Float] {
        var generator = Self.generator(key: key, epochSeed: epochSeed)
        _ = sourceMap(drawingFrom: &generator, rows: rows, columns: columns)
        var field = [Float](repeating: 0, count: 2 * rows * columns), scratch = field
        field.withUnsafeMutableBufferPointer { field in
            scratch.withUnsafeMutableBufferPointer { scratch in
                displacements(drawingFrom: &generator, rows: rows, columns: columns, into: field, scratch: scratch)
            }
        }
        return field
    }

    /// The elastic displacements of one image, x then y, each `rows * columns` values row by row, into `field`.
    ///
    /// After the five affine draws, the same generator draws `2 * rows * columns` uniforms in [-1, 1),
    /// `f32(next() >> 40) · 2^−24 · 2 − 1`: the x field row by row, then the y field. Each field is smoothed
    /// along rows, then along columns, by `elasticKernel` (values outside the image count as absent: each
    /// sum runs over the kernel offsets that land inside, in increasing order, from 0), then multiplied by
    /// `f32(elastic)`. All in Float, each operation rounded on its own.
    private func displacements(
        drawingFrom generator: inout SplitMix64, rows: Int, columns: Int, into field: UnsafeMutableBufferPointer<Float>,
        scratch: UnsafeMutableBufferPointer<Float>
    ) {
        let count = rows * columns
        guard count > 0, let fields = field.baseAddress, let scratch = scratch.baseAddress else { return }
        for index in 0..<(2 * count) { field[index] = generator.nextUnitFloat() * 2 - 1 }
        let kernel = Self.elasticKernel
        let radius = kernel.count / 2
        let strength = Float(elastic)
        /// `target[i] += weight * source[i]` for i in 0..<count, each value rounded on its own: vectorisable.
        func accumulate(
            _ target: UnsafeMutablePointer<Float>, _ weight: Float, _ source: UnsafePointer<Float>, _ count: Int
        ) {
            for i in 0..<count { target[i] = target[i] + weight * source[i] }
        }
        // Offset by offset over whole rows (each value's sum still in increasing offsets, from 0).
        for part in 0..<2 {
            let values = fields + part * count, along = scratch + part * count
            along.update(repeating: 0, count: count)
            for k in -radius...radius {
                let weight = kernel[k + radius]
                let first = max(0, -k), end = min(columns, columns - k)
                guard first < end else { continue }
                for y in 0..<rows {
                    accumulate(along + y * columns + first, weight, values + y * columns + first + k, end - first)
                }
            }
            values.update(repeating: 0, count: count)
            for k in -radius...radius {
                let weight = kernel[k + radius]
                let first = max(0, -k), end = min(rows, rows - k)
                guard first < end else { continue }
                accumulate(values + first * columns, weight, along + (first + k) * columns, (end - first) * columns)
            }
            for index in 0..<count { values[index] = strength * values[index] }
        }
    }

    /// Bilinear sampling of `pixels` at the points `map` (plus `displacement`, when given) shows.
    private func sample(
        pixels: UnsafeBufferPointer<UInt8>, rows: Int, columns: Int, map: SourceMap,
        displacement: (x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>)? = nil,
        table: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>
    ) {
        let background = table[0]
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
                var sourceX = a * Float(x) + rowX, sourceY = d * Float(x) + rowY
                if let displacement {
                    sourceX = sourceX + displacement.x[y * columns + x]
                    sourceY = sourceY + displacement.y[y * columns + x]
                }
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
