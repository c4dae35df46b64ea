// Test drawings: hand-written-looking digits made of thick anti-aliased strokes, rendered on
// canvases of any size in any polarity or as transparent RGBA (paper noise drawn from TestSupport's
// seeded TestGenerator), plus helpers to measure a 28x28 result. Deliberately left out: fonts and
// real scans.
import Foundation
import TestSupport

@testable import MNIST

/// A digit as strokes (polylines) in unit coordinates: x right, y down, both 0...1.
struct DigitSketch {
    var strokes: [[(x: Double, y: Double)]]

    static let seven = DigitSketch(strokes: [[(0.1, 0.08), (0.9, 0.08), (0.62, 0.5), (0.42, 0.95)]])
    static let one = DigitSketch(strokes: [[(0.3, 0.25), (0.55, 0.05), (0.55, 0.95)]])
    static let zero = DigitSketch(strokes: [
        (0...48).map { step in
            let angle = Double(step) / 48 * 2 * Double.pi
            return (0.5 + 0.42 * cos(angle), 0.5 + 0.46 * sin(angle))
        }
    ])
    /// A '4' drawn as two strokes that do not touch (two regions that must both be kept).
    static let four = DigitSketch(strokes: [[(0.5, 0.05), (0.08, 0.62), (0.6, 0.62)], [(0.8, 0.2), (0.8, 0.97)]])

    /// Ink coverage 0...1 on a `width` x `height` canvas, the unit square mapped onto `box`
    /// (x, y, width, height in pixels), strokes `strokeWidth` pixels thick with a 1-pixel
    /// anti-aliasing ramp: `[height, width]`.
    func coverage(
        width: Int, height: Int, box: (x: Double, y: Double, width: Double, height: Double),
        strokeWidth: Double
    ) -> [Float] {
        var ink = [Float](repeating: 0, count: width * height)
        let half = strokeWidth / 2
        for stroke in strokes {
            let points = stroke.map { (box.x + $0.x * box.width, box.y + $0.y * box.height) }
            for (a, b) in zip(points, points.dropFirst()) {
                let x0 = max(0, Int((min(a.0, b.0) - half - 1).rounded(.down)))
                let x1 = min(width - 1, Int((max(a.0, b.0) + half + 1).rounded(.up)))
                let y0 = max(0, Int((min(a.1, b.1) - half - 1).rounded(.down)))
                let y1 = min(height - 1, Int((max(a.1, b.1) + half + 1).rounded(.up)))
                if x0 > x1 || y0 > y1 { continue }
                let dx = b.0 - a.0, dy = b.1 - a.1
                let lengthSquared = max(1e-12, dx * dx + dy * dy)
                for y in y0...y1 {
                    for x in x0...x1 {
                        let px = Double(x) + 0.5, py = Double(y) + 0.5
                        let t = min(1, max(0, ((px - a.0) * dx + (py - a.1) * dy) / lengthSquared))
                        let ex = px - (a.0 + t * dx), ey = py - (a.1 + t * dy)
                        let distance = (ex * ex + ey * ey).squareRoot()
                        let value = Float(min(1, max(0, half + 0.5 - distance)))
                        ink[y * width + x] = max(ink[y * width + x], value)
                    }
                }
            }
        }
        return ink
    }
}

/// How ink coverage becomes pixels.
enum InkStyle {
    case darkOnWhite, lightOnBlack, darkOnTransparent
    /// Dark ink on paper of the given grey, with uniform noise of +-amplitude.
    case darkOnGreyPaper(paper: Int, noise: Int, seed: UInt64)
}

extension RasterImage {
    /// Renders coverage (`[height, width]`, 0...1) in a style.
    static func drawing(_ ink: [Float], width: Int, height: Int, style: InkStyle) -> RasterImage {
        switch style {
        case .darkOnWhite:
            return RasterImage(
                width: width, height: height, layout: .grey,
                samples: ink.map { UInt8((255 * (1 - $0)).rounded()) })
        case .lightOnBlack:
            return RasterImage(
                width: width, height: height, layout: .grey, samples: ink.map { UInt8((255 * $0).rounded()) })
        case .darkOnTransparent:
            // Black ink whose opacity is the coverage; fully transparent pixels hold a garish
            // colour that must not leak into the result.
            var samples = [UInt8]()
            samples.reserveCapacity(ink.count * 4)
            for value in ink {
                let alpha = UInt8((255 * value).rounded())
                samples += alpha == 0 ? [40, 220, 90, 0] : [0, 0, 0, alpha]
            }
            return RasterImage(width: width, height: height, layout: .rgba, samples: samples)
        case .darkOnGreyPaper(let paper, let noise, let seed):
            var generator = TestGenerator(seed: seed)
            return RasterImage(
                width: width, height: height, layout: .grey,
                samples: ink.map { value in
                    let clean = Double(paper) * (1 - Double(value)) + 10 * Double(value)
                    let jitter = noise > 0 ? Double(Int.random(in: -noise...noise, using: &generator)) : 0
                    return UInt8(min(255, max(0, (clean + jitter).rounded())))
                })
        }
    }
}

/// Measurements of a square float image (`[side, side]`).
enum Measure {
    /// The centre of mass, pixel (i, j) covering [i, i+1) x [j, j+1).
    static func centreOfMass(_ pixels: [Float], side: Int) -> (x: Double, y: Double) {
        var mass = 0.0, mx = 0.0, my = 0.0
        for y in 0..<side {
            for x in 0..<side {
                let value = Double(pixels[y * side + x])
                mass += value
                mx += value * (Double(x) + 0.5)
                my += value * (Double(y) + 0.5)
            }
        }
        return (mx / mass, my / mass)
    }

    /// Rows and columns holding any value above `floor`: (width, height) of that bounding box.
    static func inkExtent(_ pixels: [Float], side: Int, floor: Float = 0.02) -> (width: Int, height: Int) {
        var minX = side, maxX = -1, minY = side, maxY = -1
        for y in 0..<side {
            for x in 0..<side where pixels[y * side + x] > floor {
                minX = min(minX, x); maxX = max(maxX, x); minY = min(minY, y); maxY = max(maxY, y)
            }
        }
        return (maxX - minX + 1, maxY - minY + 1)
    }

    /// The largest absolute difference and its index.
    static func worstDifference(_ a: [Float], _ b: [Float]) -> (difference: Float, index: Int) {
        var worst: Float = 0, index = 0
        for i in 0..<min(a.count, b.count) where abs(a[i] - b[i]) > worst {
            worst = abs(a[i] - b[i])
            index = i
        }
        return (worst, index)
    }

    static func meanAbsoluteDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.reduce(0, +) / Float(max(1, a.count))
    }
}
