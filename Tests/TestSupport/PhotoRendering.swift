// Phone photos of handwritten digits, made by the tests themselves from MNIST test digits: the digit
// drawn in pen on paper (bilinear from 28x28), then what a photo of it brings, each one a condition
// that can be switched on alone or with the others: a lighting gradient, a soft-edged shadow, paper
// grain and sensor noise, ruled or squared paper, a rotated or off-centre digit, blur, and JPEG
// compression. The physics is simple (reflectance times illumination, then an sRGB-like curve), but
// each effect is what breaks a preprocessor that assumes one global threshold.
import Foundation
import MNIST

/// The effects a rendered photo has; `[]` is a clean scan.
public struct PhotoConditions: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Light falling off across the page (to 40-65% of the brightest corner).
    public static let gradient = PhotoConditions(rawValue: 1 << 0)
    /// A soft-edged shadow (the phone or a hand) over part of the page, often across the digit.
    public static let shadow = PhotoConditions(rawValue: 1 << 1)
    /// Paper texture and sensor noise.
    public static let grain = PhotoConditions(rawValue: 1 << 2)
    /// Ruled paper: light blue lines, slightly tilted, spaced about a digit's height apart.
    public static let ruled = PhotoConditions(rawValue: 1 << 3)
    /// Squared paper: a grid of grey-blue lines.
    public static let squared = PhotoConditions(rawValue: 1 << 4)
    /// The digit written at a slant of 5-12 degrees.
    public static let rotated = PhotoConditions(rawValue: 1 << 5)
    /// The digit anywhere on the page, not in the middle.
    public static let offCentre = PhotoConditions(rawValue: 1 << 6)
    /// Out of focus: Gaussian blur of 0.8-1.8 px.
    public static let blurred = PhotoConditions(rawValue: 1 << 7)
    /// Saved as a JPEG of quality 40-80 (otherwise the caller saves a PNG).
    public static let jpeg = PhotoConditions(rawValue: 1 << 8)

    /// Everything a phone photo can bring at once: gradient, shadow, grain, ruled lines, a slanted
    /// digit off centre, blur, JPEG.
    public static let phone: PhotoConditions = [
        .gradient, .shadow, .grain, .ruled, .rotated, .offCentre, .blurred, .jpeg,
    ]

    /// Each condition alone, then all of a phone photo's together, with their names.
    public static let catalogue: [(name: String, conditions: PhotoConditions)] = [
        ("clean", []), ("gradient", .gradient), ("shadow", .shadow), ("grain", .grain), ("ruled", .ruled),
        ("squared", .squared), ("rotated", .rotated), ("off-centre", .offCentre), ("blurred", .blurred),
        ("jpeg", .jpeg), ("phone (all)", .phone),
    ]

    public var description: String {
        Self.catalogue.first { $0.conditions == self }?.name ?? "conditions \(rawValue)"
    }
}

public enum PhotoRendering {
    /// A photo of `digit` (28x28 MNIST bytes, 255 = ink) written on paper under `conditions`, as RGB.
    /// The page is 360-560 pixels on each side unless `size` is given. `digit` may be wider than 28
    /// columns (a number, from `NumberRendering`); it is 28 rows.
    public static func render(
        _ digit: [UInt8], columns: Int = 28, conditions: PhotoConditions, size: (width: Int, height: Int)? = nil,
        using random: inout TestGenerator
    ) -> RasterImage {
        precondition(digit.count == 28 * columns)
        var width = size?.width ?? Int.random(in: 360...560, using: &random)
        let height = size?.height ?? Int.random(in: 360...560, using: &random)
        if size == nil && columns > 28 { width = Int(Float(width) * (0.6 + Float(columns) / 56)) }
        let shorter = Float(min(width, height))
        // The digit's 20-pixel box becomes 22-45% of the shorter side; a number fits the page.
        let scale = min(shorter * random.uniform(0.22, 0.45) / 20, 0.85 * Float(width) / Float(columns))
        let digitHeight = 20 * scale
        let reachX = (Float(columns) / 2 * 1.02 + 2) * scale, reachY = 14 * scale * 1.3
        let reach = (reachX * reachX + reachY * reachY).squareRoot()  // half the frame's diagonal
        var centreX = Float(width) / 2 + random.uniform(-0.03, 0.03) * Float(width)
        var centreY = Float(height) / 2 + random.uniform(-0.03, 0.03) * Float(height)
        if conditions.contains(.offCentre) {
            centreX = random.uniform(min(reachX, Float(width) / 2), max(Float(width) - reachX, Float(width) / 2))
            centreY = random.uniform(reachY * 0.75, Float(height) - reachY * 0.75)
        }
        let angle = conditions.contains(.rotated) ? random.uniform(5, 12) * (random.next() & 1 == 0 ? 1 : -1) : 0
        let cosine = cos(angle * .pi / 180), sine = sin(angle * .pi / 180)

        // Reflectance per channel, 0...1: paper, then the lines, then the ink over them.
        let paper: [Float] = [random.uniform(0.86, 0.94), random.uniform(0.86, 0.94), random.uniform(0.84, 0.93)]
        let count = width * height
        var red = [Float](repeating: paper[0], count: count)
        var green = [Float](repeating: paper[1], count: count)
        var blue = [Float](repeating: paper[2], count: count)
        if conditions.contains(.grain) {
            // Fibres: a coarse random field, bilinear between grid points every 12 px.
            let field = coarseField(width: width, height: height, cell: 12, amplitude: 0.035, using: &random)
            for i in 0..<count {
                red[i] *= 1 + field[i]
                green[i] *= 1 + field[i]
                blue[i] *= 1 + field[i]
            }
        }
        if conditions.contains(.ruled) || conditions.contains(.squared) {
            let squared = conditions.contains(.squared)
            let spacing = digitHeight * (squared ? random.uniform(0.3, 0.55) : random.uniform(0.65, 1.1))
            let thickness = random.uniform(1.0, 2.4)
            let tilt = random.uniform(-2, 2) * .pi / 180
            let colour: [Float] = squared ? [0.6, 0.66, 0.78] : [0.55, 0.7, 0.95]
            let phase = random.uniform(0, spacing)
            let phaseX = random.uniform(0, spacing)
            let (cosTilt, sinTilt) = (cos(tilt), sin(tilt))
            for y in 0..<height {
                for x in 0..<width {
                    // Distance to the nearest line, along the normal of the tilted lines.
                    let across = Float(y) * cosTilt - Float(x) * sinTilt - phase
                    var cover = lineCover(across, spacing: spacing, thickness: thickness)
                    if squared {
                        let along = Float(x) * cosTilt + Float(y) * sinTilt - phaseX
                        cover = max(cover, lineCover(along, spacing: spacing, thickness: thickness))
                    }
                    guard cover > 0 else { continue }
                    let i = y * width + x
                    red[i] *= 1 - cover * (1 - colour[0])
                    green[i] *= 1 - cover * (1 - colour[1])
                    blue[i] *= 1 - cover * (1 - colour[2])
                }
            }
        }
        // The pen: black or blue, not quite black, slightly uneven.
        let ink: [Float] = random.next() & 1 == 0 ? [0.1, 0.1, 0.12] : [0.12, 0.16, 0.42]
        let inkStrength = random.uniform(0.85, 1)
        let box = Int(reach.rounded(.up))
        for y in max(0, Int(centreY) - box)..<max(0, min(height, Int(centreY) + box)) {
            for x in max(0, Int(centreX) - box)..<max(0, min(width, Int(centreX) + box)) {
                let dx = Float(x) + 0.5 - centreX, dy = Float(y) + 0.5 - centreY
                let u = (dx * cosine + dy * sine) / scale + Float(columns) / 2 - 0.5
                let v = (-dx * sine + dy * cosine) / scale + 14 - 0.5
                let cover = bilinear(digit, columns: columns, u, v) * inkStrength
                guard cover > 0 else { continue }
                let i = y * width + x
                red[i] = red[i] * (1 - cover) + ink[0] * cover
                green[i] = green[i] * (1 - cover) + ink[1] * cover
                blue[i] = blue[i] * (1 - cover) + ink[2] * cover
            }
        }

        // Illumination.
        var light = [Float](repeating: random.uniform(0.9, 1.0), count: count)
        if conditions.contains(.gradient) {
            let direction = random.uniform(0, 2 * .pi)
            let darkest = random.uniform(0.4, 0.65)
            let (dx, dy) = (cos(direction), sin(direction))
            let extent = abs(dx) * Float(width) + abs(dy) * Float(height)
            let offset = min(0, dx * Float(width)) + min(0, dy * Float(height))
            for y in 0..<height {
                for x in 0..<width {
                    let t = (dx * Float(x) + dy * Float(y) - offset) / extent
                    light[y * width + x] *= 1 - (1 - darkest) * t
                }
            }
        }
        if conditions.contains(.shadow) {
            // A half-plane through a point near the digit, its edge blurred over 2-8% of the page.
            let direction = random.uniform(0, 2 * .pi)
            let (nx, ny) = (cos(direction), sin(direction))
            let pointX = centreX + random.uniform(-reach, reach), pointY = centreY + random.uniform(-reach, reach)
            let softness = shorter * random.uniform(0.02, 0.08)
            let depth = random.uniform(0.35, 0.6)
            for y in 0..<height {
                for x in 0..<width {
                    let distance = (Float(x) - pointX) * nx + (Float(y) - pointY) * ny
                    let inside = 1 / (1 + exp(-distance / (softness / 4)))
                    light[y * width + x] *= 1 - depth * inside
                }
            }
        }
        for i in 0..<count {
            red[i] *= light[i]
            green[i] *= light[i]
            blue[i] *= light[i]
        }
        if conditions.contains(.blurred) {
            let sigma = random.uniform(0.8, 1.8)
            for channel in [0, 1, 2] {
                switch channel {
                case 0: red = gaussianBlur(red, width: width, height: height, sigma: sigma)
                case 1: green = gaussianBlur(green, width: width, height: height, sigma: sigma)
                default: blue = gaussianBlur(blue, width: width, height: height, sigma: sigma)
                }
            }
        }
        let noise: Float = conditions.contains(.grain) ? random.uniform(0.015, 0.03) : 0.003
        // An sRGB-like tone curve, as a camera applies, as a table over 4096 linear levels.
        let curve = (0...4095).map { UInt8((pow(Float($0) / 4095, 1 / 2.2) * 255).rounded()) }
        var samples = [UInt8](repeating: 0, count: count * 3)
        for i in 0..<count {
            let shared = gaussian(&random) * noise
            samples[i * 3] = curve[Int((min(1, max(0, red[i] + shared)) * 4095).rounded())]
            samples[i * 3 + 1] = curve[Int((min(1, max(0, green[i] + shared)) * 4095).rounded())]
            samples[i * 3 + 2] = curve[Int((min(1, max(0, blue[i] + shared)) * 4095).rounded())]
        }
        return RasterImage(width: width, height: height, layout: .rgb, samples: samples)
    }

    /// The file: a JPEG when `conditions` has `.jpeg` (quality 40-80), else a lossless binary PPM
    /// (what a PNG would hold; the PNG encoder of a debug build takes a tenth of a second per photo).
    public static func file(
        _ image: RasterImage, conditions: PhotoConditions, using random: inout TestGenerator
    ) throws -> (bytes: [UInt8], fileExtension: String) {
        if conditions.contains(.jpeg) {
            return (try JPEG.encode(image, quality: Int.random(in: 40...80, using: &random)), "jpg")
        }
        return (PNM.encode(image), "ppm")
    }

    // MARK: - Pieces

    /// The digit's ink (0...1) at MNIST coordinates (u, v), bilinear, 0 outside.
    static func bilinear(_ digit: [UInt8], columns: Int, _ u: Float, _ v: Float) -> Float {
        guard u > -1, v > -1, u < Float(columns), v < 28 else { return 0 }
        let x0 = Int(u.rounded(.down)), y0 = Int(v.rounded(.down))
        let fx = u - Float(x0), fy = v - Float(y0)
        func at(_ x: Int, _ y: Int) -> Float {
            (0..<columns).contains(x) && (0..<28).contains(y) ? Float(digit[y * columns + x]) / 255 : 0
        }
        return (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy)
            + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy
    }

    /// How much of a pixel a line of `thickness` covers, `position` being the distance along the
    /// lines' normal from a line (lines every `spacing`).
    static func lineCover(_ position: Float, spacing: Float, thickness: Float) -> Float {
        var distance = position.truncatingRemainder(dividingBy: spacing)
        if distance < 0 { distance += spacing }
        distance = min(distance, spacing - distance)
        return min(1, max(0, thickness / 2 + 0.5 - distance))
    }

    /// Standard normal, Box-Muller.
    static func gaussian(_ random: inout TestGenerator) -> Float {
        let u = max(random.uniform(0, 1), 1e-7), v = random.uniform(0, 1)
        return sqrt(-2 * log(u)) * cos(2 * .pi * v)
    }

    /// Smooth noise of about `amplitude`: normal values on a grid every `cell` pixels, bilinear.
    static func coarseField(
        width: Int, height: Int, cell: Int, amplitude: Float, using random: inout TestGenerator
    ) -> [Float] {
        let columns = width / cell + 2, rows = height / cell + 2
        let grid = (0..<(columns * rows)).map { _ in gaussian(&random) * amplitude }
        var field = [Float](repeating: 0, count: width * height)
        for y in 0..<height {
            let gy = Float(y) / Float(cell), y0 = Int(gy), fy = gy - Float(y0)
            for x in 0..<width {
                let gx = Float(x) / Float(cell), x0 = Int(gx), fx = gx - Float(x0)
                let top = grid[y0 * columns + x0] * (1 - fx) + grid[y0 * columns + x0 + 1] * fx
                let bottom = grid[(y0 + 1) * columns + x0] * (1 - fx) + grid[(y0 + 1) * columns + x0 + 1] * fx
                field[y * width + x] = top * (1 - fy) + bottom * fy
            }
        }
        return field
    }

    /// A separable Gaussian blur (kernel to 3 sigma, edges clamped).
    static func gaussianBlur(_ values: [Float], width: Int, height: Int, sigma: Float) -> [Float] {
        let radius = Int((3 * sigma).rounded(.up))
        var kernel = (-radius...radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let total = kernel.reduce(0, +)
        kernel = kernel.map { $0 / total }
        var across = [Float](repeating: 0, count: values.count)
        for y in 0..<height {
            for x in 0..<width {
                var sum: Float = 0
                for k in -radius...radius {
                    sum += kernel[k + radius] * values[y * width + min(width - 1, max(0, x + k))]
                }
                across[y * width + x] = sum
            }
        }
        var result = [Float](repeating: 0, count: values.count)
        for y in 0..<height {
            for x in 0..<width {
                var sum: Float = 0
                for k in -radius...radius {
                    sum += kernel[k + radius] * across[min(height - 1, max(0, y + k)) * width + x]
                }
                result[y * width + x] = sum
            }
        }
        return result
    }
}

/// Handwritten numbers made of MNIST test digits, as one 28-row canvas for `PhotoRendering`.
public enum NumberRendering {
    /// The digits side by side: each digit's ink (its columns with ink) placed `gaps[i]` columns after
    /// the previous one's (negative: overlapping, the darker ink wins), 4 blank columns at each end.
    public static func compose(_ digits: [[UInt8]], gaps: [Int]) -> (canvas: [UInt8], columns: Int) {
        precondition(gaps.count == digits.count - 1)
        let spans = digits.map { digit -> Range<Int> in
            let inked = (0..<28).filter { x in (0..<28).contains { digit[$0 * 28 + x] > 0 } }
            return (inked.first ?? 0)..<((inked.last ?? 27) + 1)
        }
        var starts: [Int] = [4]
        for (index, gap) in gaps.enumerated() { starts.append(starts[index] + spans[index].count + gap) }
        let columns = (starts.last ?? 0) + (spans.last?.count ?? 0) + 4
        var canvas = [UInt8](repeating: 0, count: 28 * columns)
        for (digit, (span, start)) in zip(digits, zip(spans, starts)) {
            for y in 0..<28 {
                for x in span {
                    let target = y * columns + start + x - span.lowerBound
                    canvas[target] = max(canvas[target], digit[y * 28 + x])
                }
            }
        }
        return (canvas, columns)
    }
}

/// Things that are not digits, drawn as a pen would on a 28x28 canvas like an MNIST digit's: capital
/// letters and random scribbles.
public enum NotDigitDrawing {
    /// The letters, as strokes in the 20x20 box (0...1 coordinates, y down). Letters that are also
    /// read as digits (O, I, S, Z, B, G, Q, D) are left out: a reader cannot be blamed for them.
    public static let letters: [Character: [[(Float, Float)]]] = [
        "A": [[(0.1, 1), (0.5, 0), (0.9, 1)], [(0.25, 0.6), (0.75, 0.6)]],
        "E": [[(0.85, 0), (0.15, 0), (0.15, 1), (0.85, 1)], [(0.15, 0.5), (0.7, 0.5)]],
        "F": [[(0.85, 0), (0.15, 0), (0.15, 1)], [(0.15, 0.5), (0.7, 0.5)]],
        "H": [[(0.15, 0), (0.15, 1)], [(0.85, 0), (0.85, 1)], [(0.15, 0.5), (0.85, 0.5)]],
        "K": [[(0.15, 0), (0.15, 1)], [(0.85, 0), (0.15, 0.55)], [(0.35, 0.4), (0.85, 1)]],
        "M": [[(0.05, 1), (0.15, 0), (0.5, 0.6), (0.85, 0), (0.95, 1)]],
        "N": [[(0.15, 1), (0.15, 0), (0.85, 1), (0.85, 0)]],
        "R": [
            [(0.15, 1), (0.15, 0), (0.7, 0), (0.85, 0.15), (0.85, 0.35), (0.7, 0.5), (0.15, 0.5)],
            [(0.45, 0.5), (0.85, 1)],
        ],
        "W": [[(0.05, 0), (0.25, 1), (0.5, 0.4), (0.75, 1), (0.95, 0)]],
        "X": [[(0.1, 0), (0.9, 1)], [(0.9, 0), (0.1, 1)]],
        "Y": [[(0.1, 0), (0.5, 0.5), (0.9, 0)], [(0.5, 0.5), (0.5, 1)]],
        "P": [[(0.15, 1), (0.15, 0), (0.7, 0), (0.85, 0.15), (0.85, 0.35), (0.7, 0.5), (0.15, 0.5)]],
        "U": [[(0.15, 0), (0.15, 0.75), (0.3, 0.95), (0.5, 1), (0.7, 0.95), (0.85, 0.75), (0.85, 0)]],
        "V": [[(0.1, 0), (0.5, 1), (0.9, 0)]],
        "T": [[(0.05, 0), (0.95, 0)], [(0.5, 0), (0.5, 1)]],
    ]

    /// A 28x28 canvas (255 = ink) with `strokes` in the 20x20 box (about 2.5 px wide), each point
    /// moved by up to `jitter` box widths.
    public static func draw(_ strokes: [[(Float, Float)]], jitter: Float, using random: inout TestGenerator) -> [UInt8]
    {
        let moved = strokes.map { stroke in
            stroke.map { point in
                (
                    4 + 20 * (point.0 + random.uniform(-jitter, jitter)),
                    4 + 20 * (point.1 + random.uniform(-jitter, jitter))
                )
            }
        }
        var canvas = [UInt8](repeating: 0, count: 784)
        for y in 0..<28 {
            for x in 0..<28 {
                let (px, py) = (Float(x) + 0.5, Float(y) + 0.5)
                var nearest = Float.infinity
                for stroke in moved {
                    for (a, b) in zip(stroke, stroke.dropFirst()) {
                        let (dx, dy) = (b.0 - a.0, b.1 - a.1)
                        let t = max(0, min(1, ((px - a.0) * dx + (py - a.1) * dy) / max(dx * dx + dy * dy, 1e-6)))
                        let (cx, cy) = (a.0 + t * dx - px, a.1 + t * dy - py)
                        nearest = min(nearest, (cx * cx + cy * cy).squareRoot())
                    }
                }
                canvas[y * 28 + x] = UInt8(max(0, min(1, 1.75 - nearest)) * 255)
            }
        }
        return canvas
    }

    /// A scribble: a random walk of 5-9 strokes through the box.
    public static func scribble(using random: inout TestGenerator) -> [UInt8] {
        let points = (0..<Int.random(in: 6...10, using: &random)).map { _ in
            (random.uniform(0, 1), random.uniform(0, 1))
        }
        return draw([points], jitter: 0, using: &random)
    }
}
