// A network with batch normalisation rewritten as the same function without it, for inference and
// model files: each batch-normalisation layer, with its population statistics, is folded into the
// convolution or dense layer next to it (`Architecture.foldTarget`). Model files then hold a plain
// network that every reader (`evaluate`, `predict`, the README's numpy forward pass) runs unchanged.

extension Network {
    /// The same function without batch-normalisation layers. At inference a batch normalisation is the
    /// affine map `z = s · x + t` per channel, with `s = γ / sqrt(var + ε)` and `t = β − mean · s`. Folded
    /// into the layer before it (its output channel o): `w' = w · s_o`, `b' = b · s_o + t_o`. Folded into
    /// the layer after it: `w' = w · s_c` for each weight reading channel c, `b' = b + Σ w · t_c`.
    /// Computed in Double and rounded once. Uses `normalization` (calibrate first).
    public func folded() throws -> Network {
        let layers = architecture.layers
        let plain = Architecture(inputShape: architecture.inputShape, layers: layers.filter { $0 != .batchNorm })
        let result = try Network(architecture: plain, seed: 0)
        // Convolution and dense layers are numbered by kind, so they have the same names in both.
        for view in result.layout.tensors {
            guard let own = layout.tensor(named: view.name) else { continue }
            result.parameters.replaceSubrange(view.range, with: parameters[own.range])
        }
        /// The name of the convolution or dense layer at `index`, by the count of its kind up to it.
        func name(ofLayer index: Int) -> String {
            let kind = layers[index].isConvolution ? "conv" : "dense"
            let number = layers[...index].filter { layers[index].isConvolution ? $0.isConvolution : $0.isDense }.count
            return "\(kind)\(number)"
        }
        let shapes = self.shapes()
        var normalizations = 0
        for (index, description) in layers.enumerated() where description == .batchNorm {
            normalizations += 1
            let statistics = try affine(ofNormalization: "bn\(normalizations)")
            switch architecture.foldTarget(ofNormalization: index) {
            case .before:
                try result.scaleOutputs(of: name(ofLayer: index - 1), by: statistics)
            case .after(let target):
                // A convolution reads K x K values of each channel; a dense layer after flatten reads each
                // channel's plane of H x W values, one value of each flat feature.
                let span: Int
                if case let .convolution(_, kernelSize, _) = layers[target] {
                    span = kernelSize * kernelSize
                } else {
                    span = shapes[index].isFlat ? 1 : shapes[index].height * shapes[index].width
                }
                try result.scaleInputs(of: name(ofLayer: target), by: statistics, span: span)
            case nil:
                throw ArchitectureError("layer \(index): batchNorm cannot be folded")
            }
        }
        return result
    }

    /// Each described layer's input shape, then the output: `[layers.count + 1]`.
    func shapes() -> [SampleShape] {
        var shape = SampleShape.image(
            architecture.inputShape[0], architecture.inputShape[1], architecture.inputShape[2])
        var result = [shape]
        for description in architecture.layers {
            switch description {
            case let .convolution(outputChannels, kernelSize, padding):
                let pad = padding == .same ? kernelSize / 2 : 0
                shape = .image(
                    outputChannels, shape.height + 2 * pad - kernelSize + 1, shape.width + 2 * pad - kernelSize + 1)
            case .maxPool:
                shape = .image(shape.channels, shape.height / 2, shape.width / 2)
            case .flatten:
                shape = .flat(shape.count)
            case let .dense(outputs):
                shape = .flat(outputs)
            case .relu, .dropout, .batchNorm:
                break
            }
            result.append(shape)
        }
        return result
    }

    /// The batch normalisation `name` at inference as `(s, t)` per channel: `z = s · x + t`.
    private func affine(ofNormalization name: String) throws -> (scale: [Double], shift: [Double]) {
        guard let gamma = layout.tensor(named: "\(name).weight"), let beta = layout.tensor(named: "\(name).bias"),
            let mean = normalizationLayout.tensor(named: "\(name).running_mean"),
            let variance = normalizationLayout.tensor(named: "\(name).running_var")
        else { throw ArchitectureError("\(name) has no parameters or statistics") }
        var scale: [Double] = [], shift: [Double] = []
        for c in 0..<gamma.count {
            let s =
                Double(parameters[gamma.offset + c])
                / (Double(normalization[variance.offset + c]) + BatchNormalization.epsilon).squareRoot()
            scale.append(s)
            shift.append(Double(parameters[beta.offset + c]) - Double(normalization[mean.offset + c]) * s)
        }
        return (scale, shift)
    }

    /// Output channel o of layer `name` times `s_o`, plus `t_o`.
    private func scaleOutputs(of name: String, by affine: (scale: [Double], shift: [Double])) throws {
        guard let weight = layout.tensor(named: "\(name).weight"), let bias = layout.tensor(named: "\(name).bias"),
            bias.count == affine.scale.count
        else { throw ArchitectureError("cannot fold batch normalisation into \(name)") }
        let perOutput = weight.count / bias.count
        for o in 0..<bias.count {
            for i in 0..<perOutput {
                let index = weight.offset + o * perOutput + i
                parameters[index] = Float(Double(parameters[index]) * affine.scale[o])
            }
            parameters[bias.offset + o] = Float(
                Double(parameters[bias.offset + o]) * affine.scale[o] + affine.shift[o])
        }
    }

    /// Layer `name` reading its input through `z = s · x + t`: the weights reading channel c (inputs
    /// `c · span ..< (c + 1) · span` of each output's row) times `s_c`, and the bias plus what `t` adds.
    private func scaleInputs(of name: String, by affine: (scale: [Double], shift: [Double]), span: Int) throws {
        guard let weight = layout.tensor(named: "\(name).weight"), let bias = layout.tensor(named: "\(name).bias"),
            weight.count == bias.count * affine.scale.count * span
        else { throw ArchitectureError("cannot fold batch normalisation into \(name)") }
        let perOutput = weight.count / bias.count
        for o in 0..<bias.count {
            var added = 0.0
            for i in 0..<perOutput {
                let index = weight.offset + o * perOutput + i, c = i / span
                let w = Double(parameters[index])
                added += w * affine.shift[c]
                parameters[index] = Float(w * affine.scale[c])
            }
            parameters[bias.offset + o] = Float(Double(parameters[bias.offset + o]) + added)
        }
    }
}
