"""Plausible student solutions, each a text edit of the reference solution.py.

MUTANTS are bugs: each must fail its own test and no other. VARIANTS are
other correct readings of the assignment: each must pass every test.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    test: str  # the test that must fail (MUTANTS) or that the edit concerns (VARIANTS)
    what: str  # the bug or the alternative reading, in a student's words
    old: str   # text of the reference solution.py, found exactly once
    new: str
    also: tuple = ()  # MUTANTS: other tests that call the edited function, so fail as well


MUTANTS = [
    Edit('relu', 'backward passes the gradient through unchanged',
         'return grad_outputs * (self.forward_inputs > 0)', 'return grad_outputs'),
    Edit('relu', 'gradient masked by x < 0 instead of x > 0',
         'return grad_outputs * (self.forward_inputs > 0)',
         'return grad_outputs * (self.forward_inputs < 0)'),
    Edit('relu', 'forward writes into its inputs',
         'return np.maximum(inputs, 0)', 'return np.maximum(inputs, 0, out=inputs)'),
    Edit('softmax', 'no max subtraction: exp overflows on large logits',
         'exps = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))',
         'exps = np.exp(inputs)'),
    Edit('softmax', 'diagonal-only Jacobian y(1 - y)',
         'return y * (grad_outputs - np.sum(grad_outputs * y, axis=1, keepdims=True))',
         'return y * (1 - y) * grad_outputs'),
    Edit('dense', 'weight gradient summed over the batch, not averaged',
         'self.weights_grad[...] = self.forward_inputs.T @ grad_outputs / n',
         'self.weights_grad[...] = self.forward_inputs.T @ grad_outputs'),
    Edit('dense', 'bias gradient summed over the batch, not averaged',
         'self.biases_grad[...] = np.mean(grad_outputs, axis=0)',
         'self.biases_grad[...] = np.sum(grad_outputs, axis=0)'),
    Edit('dense', 'bias gradient forgotten',
         'self.biases_grad[...] = np.mean(grad_outputs, axis=0)', 'pass'),
    Edit('dense', 'input gradient averaged over the batch too',
         'return grad_outputs @ self.weights.T', 'return grad_outputs @ self.weights.T / n'),
    Edit('dense', 'bias not added in forward',
         'return inputs @ self.weights + self.biases', 'return inputs @ self.weights'),
    Edit('crossentropy', 'loss averaged over the batch instead of per sample',
         'return -np.sum(y_gt * np.log(np.maximum(y_pred, 1e-8)), axis=1)',
         'return -np.mean(np.sum(y_gt * np.log(np.maximum(y_pred, 1e-8)), axis=1))'),
    Edit('crossentropy', 'gradient with the wrong sign',
         'return -y_gt / np.maximum(y_pred, 1e-8)', 'return y_gt / np.maximum(y_pred, 1e-8)'),
    Edit('crossentropy', 'gradient divided by the batch size',
         'return -y_gt / np.maximum(y_pred, 1e-8)',
         'return -y_gt / np.maximum(y_pred, 1e-8) / len(y_gt)'),
    Edit('sgd', '+ instead of - in the update',
         'return parameter - self.lr * parameter_grad\n', 'return parameter + self.lr * parameter_grad\n'),
    Edit('momentum', 'inertia shared between all parameters',
         'updater.inertia = self.momentum * updater.inertia + self.lr * parameter_grad\n'
         '            return parameter - updater.inertia',
         'self.inertia = self.momentum * getattr(self, "inertia", 0) + self.lr * parameter_grad\n'
         '            return parameter - self.inertia'),
    Edit('momentum', 'learning rate applied twice',
         'return parameter - updater.inertia', 'return parameter - self.lr * updater.inertia'),
    Edit('momentum', 'momentum and learning rate swapped',
         'self.momentum * updater.inertia + self.lr * parameter_grad',
         'self.lr * updater.inertia + self.momentum * parameter_grad'),
    Edit('momentum', 'inertia never kept between steps',
         'updater.inertia = self.momentum * updater.inertia + self.lr * parameter_grad\n'
         '            return parameter - updater.inertia',
         'inertia = self.momentum * updater.inertia + self.lr * parameter_grad\n'
         '            return parameter - inertia'),
    # part 2: convolutional layers
    Edit('im2col', "'same' pads K - 1 on each side (the total, not the half)",
         'return (kernel_size - 1) // 2', 'return kernel_size - 1', also=('conv',)),
    Edit('im2col', 'an unknown padding mode silently gives 0',
         "raise ValueError(f\"unknown padding mode {mode!r}: use 'same' or 'valid'\")",
         'return 0'),
    Edit('im2col', 'get_im2col_indices swaps the row and column indices',
         'return k, i, j', 'return k, j, i'),
    Edit('im2col', 'get_im2col_indices orders the rows (ki, kj, c) instead of (c, ki, kj)',
         'k = np.repeat(np.arange(channels), K * K)[:, None]\n'
         '    i = np.tile(ki, channels)[:, None] + ho[None, :]\n'
         '    j = np.tile(kj, channels)[:, None] + wo[None, :]',
         'k = np.tile(np.arange(channels), K * K)[:, None]\n'
         '    i = np.repeat(ki, channels)[:, None] + ho[None, :]\n'
         '    j = np.repeat(kj, channels)[:, None] + wo[None, :]'),
    Edit('im2col', 'im2col orders the rows (ki, kj, c) instead of (c, ki, kj)',
         'windows.transpose(0, 4, 5, 1, 2, 3)', 'windows.transpose(4, 5, 0, 1, 2, 3)',
         also=('conv',)),
    Edit('im2col', 'im2col reads each window transposed (kj, ki)',
         'windows.transpose(0, 4, 5, 1, 2, 3)', 'windows.transpose(0, 5, 4, 1, 2, 3)',
         also=('conv',)),
    Edit('im2col', 'col2im overwrites overlapping windows instead of adding them',
         'padded[:, ki:ki + Ho, kj:kj + Wo] += cols[:, ki, kj]',
         'padded[:, ki:ki + Ho, kj:kj + Wo] = cols[:, ki, kj]', also=('conv',)),
    Edit('im2col', 'col2im keeps the padding',
         'return padded[:, padding:padding + height, padding:padding + width].transpose(3, 0, 1, 2)',
         'return padded.transpose(3, 0, 1, 2)', also=('conv',)),
    Edit('conv', 'flipped kernel (a true convolution, not the cross-correlation)',
         'kernel_rows = self.kernels.reshape(D, -1)',
         'kernel_rows = self.kernels[:, :, ::-1, ::-1].reshape(D, -1)'),
    Edit('conv', 'input gradient through the flipped kernel',
         'grad_matrix = self.kernels.reshape(D, -1).T @ grad_rows',
         'grad_matrix = self.kernels[:, :, ::-1, ::-1].reshape(D, -1).T @ grad_rows'),
    Edit('conv', 'kernel gradient summed over the batch, not averaged',
         'self.kernels_grad[...] = kernels_grad.reshape(self.kernels.shape) / n',
         'self.kernels_grad[...] = kernels_grad.reshape(self.kernels.shape)'),
    Edit('conv', 'bias gradient forgotten',
         'self.biases_grad[...] = np.sum(grad_rows, axis=1) / n', 'pass'),
    Edit('conv', 'bias gradient averaged over the positions too',
         'self.biases_grad[...] = np.sum(grad_rows, axis=1) / n',
         'self.biases_grad[...] = np.mean(grad_rows, axis=1)'),
    Edit('conv', 'bias not added in forward',
         'outputs = kernel_rows @ self.input_matrix + self.biases[:, None]',
         'outputs = kernel_rows @ self.input_matrix'),
    Edit('maxpool', 'gradient spread evenly over the pooling window',
         'grad_outputs * (self.argmax == k)', 'grad_outputs / (K * K)'),
    Edit('maxpool', 'every one of tied maxima gets the whole gradient',
         'grad_outputs * (self.argmax == k)',
         'grad_outputs * (self.forward_inputs[:, :, ki:Ho * K:K, kj:Wo * K:K] == self.forward_outputs)'),
    Edit('maxpool', 'gradient always to the top-left element of the window',
         'grad_outputs * (self.argmax == k)', 'grad_outputs * (k == 0)'),
    Edit('maxpool', 'average instead of maximum in forward',
         'outputs = np.maximum(outputs, candidates)\n        return outputs',
         'outputs = outputs + candidates\n        return outputs / (K * K)'),
    Edit('avgpool', 'sums instead of averaging',
         'return np.mean(inputs, axis=(2, 3))', 'return np.sum(inputs, axis=(2, 3))'),
    Edit('avgpool', 'backward not divided by H * W',
         'grad = grad_outputs[:, :, None, None] / (height * width)',
         'grad = grad_outputs[:, :, None, None]'),
    Edit('batchnorm', 'running statistics updated in test mode too',
         '            mean, var = self.running_mean, self.running_var\n',
         '            mean, var = self.running_mean.copy(), self.running_var.copy()\n'
         '            self.running_mean[...] = (self.momentum * self.running_mean\n'
         '                                      + (1 - self.momentum) * np.mean(inputs, axis=axes))\n'
         '            self.running_var[...] = (self.momentum * self.running_var\n'
         '                                     + (1 - self.momentum) * np.var(inputs, axis=axes))\n'),
    Edit('batchnorm', 'momentum and 1 - momentum swapped in the running averages',
         'self.running_mean[...] = self.momentum * self.running_mean + (1 - self.momentum) * mean\n'
         '            self.running_var[...] = self.momentum * self.running_var + (1 - self.momentum) * var',
         'self.running_mean[...] = (1 - self.momentum) * self.running_mean + self.momentum * mean\n'
         '            self.running_var[...] = (1 - self.momentum) * self.running_var + self.momentum * var'),
    Edit('batchnorm', 'running statistics never updated',
         'self.running_mean[...] = self.momentum * self.running_mean + (1 - self.momentum) * mean\n'
         '            self.running_var[...] = self.momentum * self.running_var + (1 - self.momentum) * var',
         'pass'),
    Edit('batchnorm', 'test mode normalizes with the batch statistics',
         'mean, var = self.running_mean, self.running_var',
         'mean, var = np.mean(inputs, axis=axes), np.var(inputs, axis=axes)'),
    Edit('batchnorm', 'eps forgotten: divides by the bare standard deviation',
         'self.inv_std = np.reshape(1 / np.sqrt(var + self.eps), shape)',
         'self.inv_std = np.reshape(1 / np.sqrt(var), shape)'),
    Edit('batchnorm', 'gamma gradient summed over the batch, not averaged',
         'self.gamma_grad[...] = grad_gamma / n', 'self.gamma_grad[...] = grad_gamma'),
    Edit('batchnorm', 'backward ignores that the batch mean and variance depend on x',
         'grad_inputs = grad_outputs - mean_grad  # in place from here: no more temporaries\n'
         '        grad_inputs -= self.normalized * mean_grad_normalized\n'
         '        grad_inputs *= scale',
         'grad_inputs = scale * grad_outputs'),
    Edit('dropout', 'inverted dropout (kept elements scaled by 1 / (1 - p), test mode unscaled)',
         'return inputs * (1 - self.p)\n'
         '        self.mask = np.random.random(inputs.shape) >= self.p\n'
         '        return inputs * self.mask',
         'return inputs\n'
         '        self.mask = np.random.random(inputs.shape) >= self.p\n'
         '        return inputs * self.mask / (1 - self.p)'),
    Edit('dropout', 'a fresh mask in backward',
         'return grad_outputs * self.mask',
         'return grad_outputs * (np.random.random(grad_outputs.shape) >= self.p)'),
    Edit('dropout', 'zeroes with probability 1 - p instead of p',
         'self.mask = np.random.random(inputs.shape) >= self.p',
         'self.mask = np.random.random(inputs.shape) < self.p'),
    Edit('dropout', 'test mode not scaled by 1 - p',
         'return inputs * (1 - self.p)', 'return inputs'),
    Edit('dropout', 'backward passes the gradient unchanged',
         'return grad_outputs * self.mask', 'return grad_outputs'),
    Edit('flatten', 'Fortran order in forward',
         'return inputs.reshape(len(inputs), -1)', "return inputs.reshape(len(inputs), -1, order='F')"),
    Edit('flatten', 'Fortran order in backward',
         'return grad_outputs.reshape((len(grad_outputs),) + self.input_shape)',
         "return grad_outputs.reshape((len(grad_outputs),) + self.input_shape, order='F')"),
    Edit('flatten', 'channels moved last before flattening (the Keras layout)',
         'return inputs.reshape(len(inputs), -1)',
         'return np.moveaxis(inputs, 1, -1).reshape(len(inputs), -1)'),
    # optional sections (the extended table)
    Edit('leakyrelu', 'alpha ignored: a fixed slope of 0.01',
         'return np.where(inputs > 0, inputs, self.alpha * inputs)',
         'return np.where(inputs > 0, inputs, 0.01 * inputs)'),
    Edit('leakyrelu', 'max(x, alpha) instead of max(alpha * x, x)',
         'return np.where(inputs > 0, inputs, self.alpha * inputs)',
         'return np.maximum(inputs, self.alpha)'),
    Edit('leakyrelu', "backward with ReLU's slope 0 for negative inputs",
         'return grad_outputs * np.where(self.forward_inputs > 0, 1.0, self.alpha)',
         'return grad_outputs * (self.forward_inputs > 0)'),
    Edit('leakyrelu', 'backward multiplies by the outputs instead of the slope',
         'return grad_outputs * np.where(self.forward_inputs > 0, 1.0, self.alpha)',
         'return grad_outputs * self.forward_outputs'),
    Edit('rmsprop', 'mean square shared between all parameters',
         'updater.mean_square = (self.rho * updater.mean_square\n'
         '                                   + (1 - self.rho) * parameter_grad ** 2)\n'
         '            return parameter - self.lr * parameter_grad / (np.sqrt(updater.mean_square) + self.eps)',
         'self.mean_square = self.rho * getattr(self, "mean_square", 0) + (1 - self.rho) * parameter_grad ** 2\n'
         '            return parameter - self.lr * parameter_grad / (np.sqrt(self.mean_square) + self.eps)'),
    Edit('rmsprop', 'rho and 1 - rho swapped',
         'updater.mean_square = (self.rho * updater.mean_square\n'
         '                                   + (1 - self.rho) * parameter_grad ** 2)',
         'updater.mean_square = ((1 - self.rho) * updater.mean_square\n'
         '                                   + self.rho * parameter_grad ** 2)'),
    Edit('rmsprop', 'gradient not squared in the mean square',
         '+ (1 - self.rho) * parameter_grad ** 2)', '+ (1 - self.rho) * np.abs(parameter_grad))'),
    Edit('rmsprop', 'eps inside the square root (the lectures add it outside)',
         'return parameter - self.lr * parameter_grad / (np.sqrt(updater.mean_square) + self.eps)',
         'return parameter - self.lr * parameter_grad / np.sqrt(updater.mean_square + self.eps)'),
    Edit('rmsprop', 'eps forgotten: a zero gradient gives 0 / 0',
         'return parameter - self.lr * parameter_grad / (np.sqrt(updater.mean_square) + self.eps)',
         'return parameter - self.lr * parameter_grad / np.sqrt(updater.mean_square)'),
    Edit('adam', 'no bias correction',
         'm_hat = updater.m / (1 - self.beta1 ** updater.step)\n'
         '            v_hat = updater.v / (1 - self.beta2 ** updater.step)',
         'm_hat, v_hat = updater.m, updater.v'),
    Edit('adam', 'one step counter for all parameters (t counts every update)',
         'updater.step += 1', 'self.step = getattr(self, "step", 0) + 1\n            updater.step = self.step'),
    Edit('adam', 'bias correction with t - 1, the steps counted from 0: 1 - beta**0 = 0',
         'm_hat = updater.m / (1 - self.beta1 ** updater.step)\n'
         '            v_hat = updater.v / (1 - self.beta2 ** updater.step)',
         'm_hat = updater.m / (1 - self.beta1 ** (updater.step - 1))\n'
         '            v_hat = updater.v / (1 - self.beta2 ** (updater.step - 1))'),
    Edit('adam', 'beta1 and beta2 swapped',
         'updater.m = self.beta1 * updater.m + (1 - self.beta1) * parameter_grad\n'
         '            updater.v = self.beta2 * updater.v + (1 - self.beta2) * parameter_grad ** 2',
         'updater.m = self.beta2 * updater.m + (1 - self.beta2) * parameter_grad\n'
         '            updater.v = self.beta1 * updater.v + (1 - self.beta1) * parameter_grad ** 2'),
    Edit('adam', 'eps inside the square root (the lectures add it outside)',
         'return parameter - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)',
         'return parameter - self.lr * m_hat / np.sqrt(v_hat + self.eps)'),
    Edit('adam', 'eps forgotten: a zero gradient gives 0 / 0',
         'return parameter - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)',
         'return parameter - self.lr * m_hat / np.sqrt(v_hat)'),
    Edit('adam', 'square root of v_hat forgotten',
         'return parameter - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)',
         'return parameter - self.lr * m_hat / (v_hat + self.eps)'),
]

VARIANTS = [
    Edit('relu', 'gradient 1 at x == 0 (the subgradient is ambiguous there)',
         'return grad_outputs * (self.forward_inputs > 0)',
         'return grad_outputs * (self.forward_inputs >= 0)'),
    Edit('relu', 'gradient through the outputs instead of the inputs',
         'return grad_outputs * (self.forward_inputs > 0)',
         'return np.where(self.forward_outputs > 0, grad_outputs, 0)'),
    Edit('softmax', "the maximum of the whole tensor subtracted (the assignment's tip)",
         'exps = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))',
         'exps = np.exp(inputs - np.max(inputs))'),
    Edit('softmax', 'the maximum of the whole tensor subtracted, in float32',
         'exps = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))',
         'x = inputs.astype(np.float32)\n        exps = np.exp(x - np.max(x))'),
    Edit('softmax', "each row's maximum subtracted, in float32",
         'exps = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))',
         'x = inputs.astype(np.float32)\n        exps = np.exp(x - np.max(x, axis=1, keepdims=True))'),
    Edit('softmax', 'backward through an explicit Jacobian per sample',
         'return y * (grad_outputs - np.sum(grad_outputs * y, axis=1, keepdims=True))',
         'jacobian = y[:, :, None] * (np.eye(y.shape[1]) - y[:, None, :])\n'
         '        return np.einsum("ni,nij->nj", grad_outputs, jacobian)'),
    Edit('dense', 'computes in float32',
         'return inputs @ self.weights + self.biases',
         'return (inputs.astype(np.float32) @ self.weights.astype(np.float32)'
         ' + self.biases.astype(np.float32))'),
    Edit('crossentropy', 'the formula exactly as written, no clipping',
         'return -np.sum(y_gt * np.log(np.maximum(y_pred, 1e-8)), axis=1)',
         'return -np.sum(y_gt * np.log(y_pred), axis=1)'),
    Edit('crossentropy', 'gradient without clipping',
         'return -y_gt / np.maximum(y_pred, 1e-8)', 'return -y_gt / y_pred'),
    Edit('momentum', 'updates the parameter in place and returns it',
         'return parameter - updater.inertia',
         'parameter -= updater.inertia\n            return parameter'),
    # part 2: convolutional layers
    Edit('im2col', "'same' padding as K // 2 (the same for odd K)",
         'return (kernel_size - 1) // 2', 'return kernel_size // 2'),
    Edit('im2col', 'im2col by fancy indexing with get_im2col_indices',
         'padded = np.zeros((channels, height + 2 * padding, width + 2 * padding, n), dtype=inputs.dtype)\n'
         '    padded[:, padding:padding + height, padding:padding + width] = inputs.transpose(1, 2, 3, 0)\n'
         '    windows = np.lib.stride_tricks.sliding_window_view(padded, (K, K), axis=(1, 2))\n'
         '    Ho, Wo = windows.shape[1:3]  # windows (C, Ho, Wo, n, K, K)\n'
         '    matrix = windows.transpose(0, 4, 5, 1, 2, 3).reshape(channels * K * K, Ho * Wo, n)\n'
         '    return matrix.transpose(2, 0, 1)',
         'padded = np.pad(inputs, ((0, 0), (0, 0), (padding, padding), (padding, padding)))\n'
         '    k, i, j = get_im2col_indices(inputs.shape, K, padding)\n'
         '    return padded[:, k, i, j]'),
    Edit('im2col', 'col2im with np.add.at and get_im2col_indices',
         'cols = cols.transpose(1, 2, 0).reshape(channels, K, K, Ho, Wo, n)\n'
         '    padded = np.zeros((channels, height + 2 * padding, width + 2 * padding, n), dtype=cols.dtype)\n'
         '    for ki in range(K):\n'
         '        for kj in range(K):\n'
         '            padded[:, ki:ki + Ho, kj:kj + Wo] += cols[:, ki, kj]\n'
         '    return padded[:, padding:padding + height, padding:padding + width].transpose(3, 0, 1, 2)',
         'padded = np.zeros((n, channels, height + 2 * padding, width + 2 * padding), dtype=cols.dtype)\n'
         '    k, i, j = get_im2col_indices(input_shape, K, padding)\n'
         '    np.add.at(padded, (slice(None), k, i, j), cols)\n'
         '    return padded[:, :, padding:padding + height, padding:padding + width]'),
    Edit('conv', 'computes in float32',
         'cols = im2col(inputs, self.kernel_size, self.padding)  # (n, C*K*K, Ho*Wo)\n'
         '        self.input_matrix = cols.transpose(1, 2, 0).reshape(cols.shape[1], -1)  # (C*K*K, Ho*Wo*n)\n'
         '        kernel_rows = self.kernels.reshape(D, -1)',
         'cols = im2col(inputs.astype(np.float32), self.kernel_size, self.padding)\n'
         '        self.input_matrix = cols.transpose(1, 2, 0).reshape(cols.shape[1], -1)\n'
         '        kernel_rows = self.kernels.reshape(D, -1).astype(np.float32)'),
    Edit('conv', 'kernel gradient by a batched matmul of the (n, C*K*K, Ho*Wo) columns',
         'kernels_grad = (self.input_matrix @ grad_rows.T).T',
         'cols = self.input_matrix.reshape(len(self.input_matrix), -1, n).transpose(2, 0, 1)\n'
         '        kernels_grad = np.sum(grad_outputs.reshape(n, D, -1) @ cols.transpose(0, 2, 1), axis=0)'),
    Edit('maxpool', 'the gradient split evenly among tied maxima',
         'for k in range(K * K):\n'
         '            ki, kj = divmod(k, K)\n'
         '            grad_inputs[:, :, ki:Ho * K:K, kj:Wo * K:K] = grad_outputs * (self.argmax == k)',
         'windows = self.forward_inputs[:, :, :Ho * K, :Wo * K].reshape(*grad_outputs.shape[:2], Ho, K, Wo, K)\n'
         '        maxima = windows == self.forward_outputs[:, :, :, None, :, None]\n'
         '        shares = maxima / np.sum(maxima, axis=(3, 5), keepdims=True)\n'
         '        grad_inputs[:, :, :Ho * K, :Wo * K] = (grad_outputs[:, :, :, None, :, None] * shares\n'
         '                                             ).reshape(*grad_outputs.shape[:2], Ho * K, Wo * K)'),
    Edit('maxpool', 'the first of tied maxima, by argmax over each flattened window',
         'for k in range(K * K):\n'
         '            ki, kj = divmod(k, K)\n'
         '            grad_inputs[:, :, ki:Ho * K:K, kj:Wo * K:K] = grad_outputs * (self.argmax == k)',
         'windows = self.forward_inputs[:, :, :Ho * K, :Wo * K].reshape(*grad_outputs.shape[:2], Ho, K, Wo, K)\n'
         '        first = np.argmax(windows.transpose(0, 1, 2, 4, 3, 5).reshape(*grad_outputs.shape, K * K), axis=-1)\n'
         '        for k in range(K * K):\n'
         '            ki, kj = divmod(k, K)\n'
         '            grad_inputs[:, :, ki:Ho * K:K, kj:Wo * K:K] = grad_outputs * (first == k)'),
    Edit('maxpool', 'the last of tied maxima takes the gradient',
         '(candidates > outputs) * np.int16(k)', '(candidates >= outputs) * np.int16(k)'),
    Edit('batchnorm', 'running variance from the unbiased batch variance (m / (m - 1))',
         'self.running_var[...] = self.momentum * self.running_var + (1 - self.momentum) * var',
         'm = inputs.size / var.size\n'
         '            self.running_var[...] = self.momentum * self.running_var + (1 - self.momentum) * var * m / (m - 1)'),
    Edit('batchnorm', 'running averages kept as new float64 arrays instead of in place',
         'self.running_mean[...] = self.momentum * self.running_mean + (1 - self.momentum) * mean\n'
         '            self.running_var[...] = self.momentum * self.running_var + (1 - self.momentum) * var',
         'self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mean\n'
         '            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var'),
    Edit('batchnorm', "backward by the paper's chain through dvar and dmean",
         'grad_inputs = grad_outputs - mean_grad  # in place from here: no more temporaries\n'
         '        grad_inputs -= self.normalized * mean_grad_normalized\n'
         '        grad_inputs *= scale\n'
         '        return grad_inputs',
         'grad_normalized = grad_outputs * np.reshape(self.gamma, shape)\n'
         '        centered = self.normalized / self.inv_std\n'
         '        grad_var = np.sum(grad_normalized * centered, axis=axes, keepdims=True) * -0.5 * self.inv_std ** 3\n'
         '        grad_mean = (np.sum(-grad_normalized * self.inv_std, axis=axes, keepdims=True)\n'
         '                     + grad_var * np.mean(-2 * centered, axis=axes, keepdims=True))\n'
         '        return grad_normalized * self.inv_std + grad_var * 2 * centered / m + grad_mean / m'),
    Edit('dropout', 'mask drawn with np.random.binomial',
         'self.mask = np.random.random(inputs.shape) >= self.p',
         'self.mask = np.random.binomial(1, 1 - self.p, size=inputs.shape)'),
    Edit('dropout', 'mask from an unseeded np.random.default_rng(), different on every run',
         'self.mask = np.random.random(inputs.shape) >= self.p',
         'self.mask = np.random.default_rng().random(inputs.shape) >= self.p'),
    Edit('dropout', 'np.where instead of multiplying by the mask',
         'return inputs * self.mask', 'return np.where(self.mask, inputs, 0)'),
    # optional sections (the extended table)
    Edit('leakyrelu', 'max(alpha * x, x), the lectures\' formula',
         'return np.where(inputs > 0, inputs, self.alpha * inputs)',
         'return np.maximum(self.alpha * inputs, inputs)'),
    Edit('leakyrelu', 'slope 1 at x == 0 (the subgradient is ambiguous there)',
         'return grad_outputs * np.where(self.forward_inputs > 0, 1.0, self.alpha)',
         'return grad_outputs * np.where(self.forward_inputs >= 0, 1.0, self.alpha)'),
    Edit('rmsprop', 'state kept in a dict keyed by the updater, computed in float32',
         'updater.mean_square = (self.rho * updater.mean_square\n'
         '                                   + (1 - self.rho) * parameter_grad ** 2)\n'
         '            return parameter - self.lr * parameter_grad / (np.sqrt(updater.mean_square) + self.eps)',
         'states = self.__dict__.setdefault("states", {})\n'
         '            g = parameter_grad.astype(np.float32)\n'
         '            states[updater] = self.rho * states.get(updater, 0) + (1 - self.rho) * g * g\n'
         '            return parameter - self.lr * g / (states[updater] ** 0.5 + self.eps)'),
    Edit('adam', 'the parameter updated in place, bias correction folded into the step size',
         'm_hat = updater.m / (1 - self.beta1 ** updater.step)\n'
         '            v_hat = updater.v / (1 - self.beta2 ** updater.step)\n'
         '            return parameter - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)',
         'correction = np.sqrt(1 - self.beta2 ** updater.step) / (1 - self.beta1 ** updater.step)\n'
         '            parameter -= self.lr * correction * updater.m / (np.sqrt(updater.v) + self.eps * np.sqrt(1 - self.beta2 ** updater.step))\n'
         '            return parameter'),
]
