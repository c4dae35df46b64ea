// Where each named tensor lives in the flat parameter slab (and, identically, in the gradient
// slab). Built once from a size table; no tensor owns memory of its own.

/// One named tensor inside a flat slab: `slab[offset..<offset+count]` holds it, row-major.
public struct TensorView: Sendable, Equatable, Codable {
    /// Name as written to model files, such as `conv1.weight`.
    public let name: String
    /// Shape in PyTorch order: convolution weights `[O, C, K, K]`, dense weights `[out, in]`.
    public let shape: [Int]
    /// Index of the first element in the slab.
    public let offset: Int
    /// Number of elements (the product of `shape`).
    public var count: Int { shape.reduce(1, *) }
    /// The slab indices of this tensor.
    public var range: Range<Int> { offset..<(offset + count) }
}

/// The size table of a network: every tensor in slab order, contiguous, starting at 0.
public struct ParameterLayout: Sendable, Equatable {
    /// The tensors, in slab order.
    public let tensors: [TensorView]
    /// Total number of Floats in the slab.
    public let count: Int

    /// Lays out `table` (name, shape) contiguously in order.
    public init(_ table: [(name: String, shape: [Int])]) {
        var offset = 0
        var tensors = [TensorView]()
        for entry in table {
            let view = TensorView(name: entry.name, shape: entry.shape, offset: offset)
            tensors.append(view)
            offset += view.count
        }
        self.tensors = tensors
        self.count = offset
    }

    /// The tensor called `name`, if any.
    public func tensor(named name: String) -> TensorView? {
        tensors.first { $0.name == name }
    }
}
