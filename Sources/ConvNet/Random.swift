// Seeded random numbers for everything that must be reproducible: weight initialisation,
// shuffling, dropout masks and augmentation. Not cryptographic, and deliberately independent of
// the standard library's unspecified algorithms (`shuffle(using:)` may change between releases).

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit generator whose stream is fully determined by
/// its seed, on every platform and Swift version.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The generator's whole state.
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.finalize(state)
    }

    /// A uniform Float in [0, 1) with 24 random bits.
    @inlinable
    public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * 0x1p-24
    }

    /// A uniform Double in [0, 1) with 53 random bits.
    @inlinable
    public mutating func nextUnitDouble() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// A uniform integer in 0..<bound (bound > 0), by multiply-shift with rejection, so unbiased.
    @inlinable
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let limit = UInt64(bound)
        while true {
            let product = next().multipliedFullWidth(by: limit)
            if product.low >= (0 &- limit) % limit { return Int(product.high) }
        }
    }

    /// The SplitMix64 output function: a bijective 64-bit mix.
    @inlinable
    public static func finalize(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A seed derived from several integers (for example run seed, step and shard offset), so
    /// that independent streams can be drawn without sharing a generator.
    @inlinable
    public static func derivedSeed(_ parts: UInt64...) -> UInt64 {
        var hash: UInt64 = 0x6A09_E667_F3BC_C908
        for part in parts { hash = finalize(hash ^ finalize(part &+ 0x9E37_79B9_7F4A_7C15)) }
        return hash
    }

    /// Fisher–Yates shuffle with this generator; the result depends only on the seed and count.
    public mutating func shuffle<T>(_ array: inout [T]) {
        var index = array.count - 1
        while index > 0 {
            let other = nextInt(below: index + 1)
            array.swapAt(index, other)
            index -= 1
        }
    }

    /// `0..<count` in a seeded random order.
    public static func permutation(count: Int, seed: UInt64) -> [Int] {
        var generator = SplitMix64(seed: seed)
        var result = Array(0..<count)
        generator.shuffle(&result)
        return result
    }
}
