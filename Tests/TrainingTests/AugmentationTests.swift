// The augmentation against a naive reference written from its documentation: draw the five amounts,
// build the forward matrix, invert it, and sample each output pixel bilinearly in Double. Plus the
// whole-pixel shifts of earlier versions, bit for bit.
import ConvNet
import Foundation
import MNIST
import Training
import XCTest

final class AugmentationTests: XCTestCase {
    /// A 28x28 test image with structure everywhere: a bright diagonal bar, a ring, a gradient.
    private static let image: [UInt8] = (0..<784).map { index in
        let x = Double(index % 28), y = Double(index / 28)
        let ring = abs(((x - 14) * (x - 14) + (y - 12) * (y - 12)).squareRoot() - 8) < 1.5 ? 255.0 : 0
        let bar = abs(x - y - 3) < 1.2 ? 200.0 : 0
        return UInt8(min(255, ring + bar + x * 2))
    }

    private func augmented(_ augmentation: Augmentation, key: Int, epochSeed: UInt64) -> [Float] {
        var output = [Float](repeating: .nan, count: 784)
        Self.image.withUnsafeBufferPointer { pixels in
            InputNormalization.table.withUnsafeBufferPointer { table in
                output.withUnsafeMutableBufferPointer { output in
                    augmentation.apply(
                        pixels: pixels, rows: 28, columns: 28, key: key, epochSeed: epochSeed, table: table,
                        output: output)
                }
            }
        }
        return output
    }

    /// The documented transform, computed independently in Double: the five affine draws; with an elastic
    /// strength, the two fields of uniforms, each smoothed by a direct two-dimensional sum of the Gaussian
    /// (truncated at 12 pixels, nothing outside the image); the forward matrix inverted, and the affine
    /// source point moved by the displacement; bilinear sampling.
    private func reference(_ augmentation: Augmentation, key: Int, epochSeed: UInt64) -> (
        image: [Double], displacement: [Double]
    ) {
        var generator = SplitMix64(seed: SplitMix64.derivedSeed(epochSeed, UInt64(key)))
        let u = (0..<5).map { _ in generator.nextUnitDouble() * 2 - 1 }
        let field = (0..<(2 * 784)).map { _ in Double(generator.next() >> 40) / 16_777_216 * 2 - 1 }
        let weights = (-12...12).map { exp(-Double($0 * $0) / 32) }
        let total = weights.reduce(0, +)
        let g = weights.map { $0 / total }
        var displacement = [Double](repeating: 0, count: 2 * 784)
        for part in 0..<2 where augmentation.elastic > 0 {
            for y in 0..<28 {
                for x in 0..<28 {
                    var sum = 0.0
                    for j in -12...12 where (0..<28).contains(y + j) {
                        for i in -12...12 where (0..<28).contains(x + i) {
                            sum += g[j + 12] * g[i + 12] * field[part * 784 + (y + j) * 28 + x + i]
                        }
                    }
                    displacement[part * 784 + y * 28 + x] = augmentation.elastic * sum
                }
            }
        }
        let angle = u[0] * augmentation.rotation * .pi / 180
        let factor = 1 + u[1] * augmentation.scale
        let shear = tan(u[2] * augmentation.shear * .pi / 180)
        let shift = (u[3] * augmentation.shift, u[4] * augmentation.shift)
        // Forward matrix factor · R · Sh, applied about the centre (13.5, 13.5), then the shift.
        let m00 = factor * cos(angle), m01 = factor * (cos(angle) * shear - sin(angle))
        let m10 = factor * sin(angle), m11 = factor * (sin(angle) * shear + cos(angle))
        let determinant = m00 * m11 - m01 * m10
        func pixel(_ x: Int, _ y: Int) -> Double {
            guard (0..<28).contains(x), (0..<28).contains(y) else { return 0 }
            return Double(Self.image[y * 28 + x])
        }
        let image = (0..<784).map { index in
            let qx = Double(index % 28) - 13.5 - shift.0, qy = Double(index / 28) - 13.5 - shift.1
            let px = (m11 * qx - m01 * qy) / determinant + 13.5 + displacement[index]
            let py = (-m10 * qx + m00 * qy) / determinant + 13.5 + displacement[784 + index]
            let x0 = Int(px.rounded(.down)), y0 = Int(py.rounded(.down))
            let fx = px - Double(x0), fy = py - Double(y0)
            let value =
                (1 - fy) * ((1 - fx) * pixel(x0, y0) + fx * pixel(x0 + 1, y0))
                + fy * ((1 - fx) * pixel(x0, y0 + 1) + fx * pixel(x0 + 1, y0 + 1))
            return (value / 255 - Double(InputNormalization.mean)) / Double(InputNormalization.standardDeviation)
        }
        return (image, displacement)
    }

    func testAffineTransformsMatchANaiveReference() {
        let augmentation = Augmentation(shift: 3, rotation: 20, scale: 0.2, shear: 15)
        var largest = 0.0
        var moved = 0
        for key in 0..<40 {
            let fast = augmented(augmentation, key: key, epochSeed: 99)
            let slow = reference(augmentation, key: key, epochSeed: 99).image
            for (a, b) in zip(fast, slow) { largest = max(largest, abs(Double(a) - b)) }
            let plain = InputNormalization.normalized(Self.image)
            if zip(fast, plain).contains(where: { abs($0 - $1) > 0.5 }) { moved += 1 }
        }
        // Float against Double: the pixel positions differ by ~1e-5 px, values by ~1e-4 (of a range of 3.2).
        XCTAssertLessThan(largest, 2e-3)
        XCTAssertEqual(moved, 40, "every image is transformed")
    }

    func testElasticDistortionMatchesANaiveReference() {
        let augmentation = Augmentation(shift: 2, rotation: 10, scale: 0.1, shear: 5, elastic: 34)
        XCTAssertFalse(augmentation.isWholePixelShift)
        var affineOnly = augmentation
        affineOnly.elastic = 0
        var largest = 0.0, squares = 0.0, farFromAffine = 0
        for key in 0..<12 {
            let fast = augmented(augmentation, key: key, epochSeed: 41)
            let (slow, displacement) = reference(augmentation, key: key, epochSeed: 41)
            for (a, b) in zip(fast, slow) { largest = max(largest, abs(Double(a) - b)) }
            squares += displacement.reduce(0) { $0 + $1 * $1 }
            let affine = augmented(affineOnly, key: key, epochSeed: 41)
            if zip(fast, affine).filter({ abs($0 - $1) > 0.5 }).count > 20 { farFromAffine += 1 }
        }
        XCTAssertLessThan(largest, 2e-3, "Float against Double")
        // Uniforms of variance 1/3 smoothed by a unit-sum Gaussian of σ = 4 keep a variance of about
        // 1/3 · (1 / (2 √π σ))² (less near the edges, where the kernel is cut): a typical displacement of
        // about 0.04 · 34 = 1.4 pixels. Measured 1.34: the distortion is there and is not wild.
        let rms = (squares / Double(12 * 2 * 784)).squareRoot()
        XCTAssertGreaterThan(rms, 0.8)
        XCTAssertLessThan(rms, 1.8)
        XCTAssertEqual(farFromAffine, 12, "every image is distorted beyond its affine transform")
    }

    /// The values PROTOCOL.md gives to check an implementation against (computed there by its Python skeleton).
    func testElasticDisplacementsAreThoseTheProtocolDocuments() {
        let augmentation = Augmentation(shift: 2, rotation: 10, scale: 0.1, elastic: 34)
        let field = augmentation.displacements(
            key: 0, epochSeed: TrainingSeeds.augmentation(1, epoch: 0), rows: 28, columns: 28)
        XCTAssertEqual(Augmentation.elasticKernel[12], 0.09990835934877396)
        XCTAssertEqual(Augmentation.elasticKernel[0], 0.0011098815593868494)
        XCTAssertEqual(field[0], -0.6911112666130066)
        XCTAssertEqual(field[13 * 28 + 13], -0.7804155945777893)
        XCTAssertEqual(field[784 + 13 * 28 + 13], -2.1781530380249023)
    }

    /// Elastic strengths on images smaller than the kernel, and 0 (exactly the affine transform).
    func testElasticDistortionOnSmallImagesAndAtZero() {
        let small: [UInt8] = (0..<35).map { UInt8($0 * 7) }
        var output = [Float](repeating: .nan, count: 35)
        small.withUnsafeBufferPointer { pixels in
            InputNormalization.table.withUnsafeBufferPointer { table in
                output.withUnsafeMutableBufferPointer { output in
                    Augmentation(shift: 1, rotation: 5, elastic: 100).apply(
                        pixels: pixels, rows: 5, columns: 7, key: 3, epochSeed: 2, table: table, output: output)
                }
            }
        }
        XCTAssertTrue(output.allSatisfy(\.isFinite))
        let plain = Augmentation(shift: 2, rotation: 10, scale: 0.1)
        var zero = plain
        zero.elastic = 0
        XCTAssertEqual(
            augmented(zero, key: 9, epochSeed: 1).map(\.bitPattern),
            augmented(plain, key: 9, epochSeed: 1).map(\.bitPattern))
    }

    func testWholePixelShiftsAreThoseOfEarlierVersions() {
        let augmentation = Augmentation()  // shift 2, nothing else
        XCTAssertTrue(augmentation.isWholePixelShift)
        let plain = InputNormalization.normalized(Self.image)
        for key in 0..<20 {
            let bits = SplitMix64.finalize(SplitMix64.derivedSeed(7, UInt64(key)))
            let dx = Int(bits % 5) - 2, dy = Int((bits >> 8) % 5) - 2
            let expected: [Float] = (0..<784).map { index in
                let x = index % 28 - dx, y = index / 28 - dy
                return (0..<28).contains(x) && (0..<28).contains(y) ? plain[y * 28 + x] : InputNormalization.table[0]
            }
            XCTAssertEqual(
                augmented(augmentation, key: key, epochSeed: 7).map(\.bitPattern), expected.map(\.bitPattern))
        }
    }

    /// The same (seed, key) gives the same bits; another key or epoch another transform.
    func testTransformsDependOnlyOnTheSeedAndTheKey() {
        let augmentation = Augmentation(shift: 2, rotation: 10, scale: 0.1, shear: 5)
        XCTAssertEqual(
            augmented(augmentation, key: 5, epochSeed: 3).map(\.bitPattern),
            augmented(augmentation, key: 5, epochSeed: 3).map(\.bitPattern))
        XCTAssertNotEqual(augmented(augmentation, key: 5, epochSeed: 3), augmented(augmentation, key: 6, epochSeed: 3))
        XCTAssertNotEqual(augmented(augmentation, key: 5, epochSeed: 3), augmented(augmentation, key: 5, epochSeed: 4))
    }

    /// Old configurations (no augmentation keys) decode to whole-pixel shifts of 2; every new limit
    /// is validated, naming its flag.
    func testConfigurationsOfEarlierVersionsKeepTheirAugmentation() throws {
        let old = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(#"{"augment":true}"#.utf8))
        XCTAssertEqual(old.augmentation, Augmentation(shift: 2, rotation: 0, scale: 0, shear: 0))
        var configuration = TrainingConfiguration()
        configuration.rotation = 91
        XCTAssertThrowsError(try configuration.validate()) { error in
            XCTAssertEqual((error as? TrainingConfiguration.ValidationError)?.flag, "--rotation")
        }
        configuration.rotation = 10
        configuration.scale = .nan
        XCTAssertThrowsError(try configuration.validate()) { error in
            XCTAssertEqual((error as? TrainingConfiguration.ValidationError)?.flag, "--scale")
        }
        configuration.scale = 0.1
        configuration.elastic = 101
        XCTAssertThrowsError(try configuration.validate()) { error in
            XCTAssertEqual((error as? TrainingConfiguration.ValidationError)?.flag, "--elastic")
        }
        configuration.elastic = 0
        XCTAssertNoThrow(try configuration.validate())
        // Without elastic distortion the recorded JSON is that of the versions before it (the same model
        // files); with it, the setting is recorded and read back.
        XCTAssertFalse(configuration.jsonString().contains("elastic"))
        configuration.elastic = 34
        let recorded = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(configuration.jsonString().utf8))
        XCTAssertEqual(recorded, configuration)
        XCTAssertEqual(recorded.augmentation?.elastic, 34)
        configuration.augment = false
        XCTAssertNil(configuration.augmentation)
    }
}
