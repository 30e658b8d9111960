"""Your solution: fill in every region between the "your code here" markers.

Only this file is uploaded to the checking system. Code outside the markers
is given: keep it as it is. Every array starts with the batch dimension n;
images are (n, C, H, W).
"""
import numpy as np

from interface import Layer, Loss, Model, Optimizer, he_initializer

# ================================ 2.1.1 ReLU ================================

class ReLU(Layer):
    """y = max(x, 0), elementwise; any input shape."""

    def forward(self, inputs):
        """inputs (n, ...) -> outputs (n, ...)."""
        # your code here \/
        return np.maximum(inputs, 0)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, ...) -> dL/dx (n, ...)."""
        # your code here \/
        return grad_outputs * (self.forward_inputs > 0)
        # your code here /\


# ============================== 2.1.2 Softmax ===============================

class Softmax(Layer):
    """y_i = exp(x_i) / sum_j exp(x_j) over the last axis of (n, d) inputs."""

    def forward(self, inputs):
        """inputs (n, d) -> outputs (n, d), each row sums to 1."""
        # your code here \/
        exps = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
        return exps / np.sum(exps, axis=1, keepdims=True)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, d) -> dL/dx (n, d), using y = self.forward_outputs."""
        # your code here \/
        y = self.forward_outputs
        return y * (grad_outputs - np.sum(grad_outputs * y, axis=1, keepdims=True))
        # your code here /\


# =============================== 2.1.3 Dense ================================

class Dense(Layer):
    """y = x W + b: inputs (n, c) -> outputs (n, units)."""

    def __init__(self, units, input_shape=None):
        super().__init__(input_shape)
        self.units = units

    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        input_units, = self.input_shape
        self.output_shape = (self.units,)
        self.weights, self.weights_grad = self.add_parameter(
            'weights', (input_units, self.units), he_initializer(input_units))
        self.biases, self.biases_grad = self.add_parameter(
            'biases', (self.units,), np.zeros)

    def forward(self, inputs):
        """inputs (n, c) -> outputs (n, units)."""
        # your code here \/
        return inputs @ self.weights + self.biases
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, units) -> dL/dx (n, c).

        Fills self.weights_grad (c, units) and self.biases_grad (units,),
        averaged over the batch.
        """
        # your code here \/
        n = len(grad_outputs)
        self.weights_grad[...] = self.forward_inputs.T @ grad_outputs / n
        self.biases_grad[...] = np.mean(grad_outputs, axis=0)
        return grad_outputs @ self.weights.T
        # your code here /\


# ============================ 2.2.1 CrossEntropy ============================

class CategoricalCrossentropy(Loss):
    """L = -sum_i y_gt_i * ln(y_pred_i) for each sample."""

    def __call__(self, y_gt, y_pred):
        """y_gt, y_pred (n, d) -> per-sample losses (n,)."""
        # your code here \/
        return -np.sum(y_gt * np.log(np.maximum(y_pred, 1e-8)), axis=1)
        # your code here /\

    def gradient(self, y_gt, y_pred):
        """y_gt, y_pred (n, d) -> dL/dy_pred (n, d) of each sample's loss."""
        # your code here \/
        return -y_gt / np.maximum(y_pred, 1e-8)
        # your code here /\


CrossEntropy = CategoricalCrossentropy


# ================================ 2.3.1 SGD =================================

class SGD(Optimizer):
    """P <- P - lr * dL/dP."""

    def __init__(self, lr):
        self.lr = lr

    def get_parameter_updater(self, parameter_shape):
        def updater(parameter, parameter_grad):
            """parameter, parameter_grad (parameter_shape) -> new parameter."""
            # your code here \/
            return parameter - self.lr * parameter_grad
            # your code here /\

        return updater


# ============================ 2.3.2 SGDMomentum =============================

class SGDMomentum(Optimizer):
    """I <- momentum * I + lr * dL/dP;  P <- P - I, with I = 0 at first."""

    def __init__(self, lr, momentum=0.0):
        self.lr = lr
        self.momentum = momentum

    def get_parameter_updater(self, parameter_shape):
        def updater(parameter, parameter_grad):
            """parameter, parameter_grad (parameter_shape) -> new parameter."""
            # your code here \/
            updater.inertia = self.momentum * updater.inertia + self.lr * parameter_grad
            return parameter - updater.inertia
            # your code here /\

        updater.inertia = np.zeros(parameter_shape, dtype=np.float32)
        return updater


# ============================== 2.4 MNIST ===================================

def train_mnist_model(x_train, y_train, x_valid, y_valid):
    """Builds and trains a model on MNIST; returns the trained Model.

    x_train (n, 784) float32 normalized to mean 0, std 1; y_train (n, 10)
    one-hot; likewise x_valid, y_valid. Test accuracy must exceed 90% and
    training must take under 10 minutes.
    """
    # your code here \/
    model = Model(CategoricalCrossentropy(), SGDMomentum(lr=0.02, momentum=0.9))
    model.add(Dense(512, input_shape=(784,)))
    model.add(ReLU())
    model.add(Dense(10))
    model.add(Softmax())
    model.fit(x_train, y_train, batch_size=64, epochs=8,
              x_valid=x_valid, y_valid=y_valid)
    return model
    # your code here /\


# ============================== 3.1 Conv2D ==================================

def determine_padding(kernel_size, mode):
    """Padding P added on each side of an image for an odd kernel_size K.

    'same' keeps H and W, 'valid' adds none; any other mode is a ValueError.
    """
    # your code here \/
    if mode == 'same':
        return (kernel_size - 1) // 2
    if mode == 'valid':
        return 0
    raise ValueError(f"unknown padding mode {mode!r}: use 'same' or 'valid'")
    # your code here /\


def get_im2col_indices(input_shape, kernel_size, padding):
    """Indices (k, i, j) with x_padded[:, k, i, j] = im2col of x_padded, (n, C*K*K, Ho*Wo).

    input_shape is (n, C, H, W); k, i, j are integer arrays broadcastable to
    (C*K*K, Ho*Wo): row c*K*K + ki*K + kj, column ho*Wo + wo reads channel c,
    row ho + ki, column wo + kj of the padded images.
    """
    # your code here \/
    _, channels, height, width = input_shape
    K = kernel_size
    Ho, Wo = height + 2 * padding - K + 1, width + 2 * padding - K + 1
    ki, kj = np.repeat(np.arange(K), K), np.tile(np.arange(K), K)
    ho, wo = np.repeat(np.arange(Ho), Wo), np.tile(np.arange(Wo), Ho)
    k = np.repeat(np.arange(channels), K * K)[:, None]
    i = np.tile(ki, channels)[:, None] + ho[None, :]
    j = np.tile(kj, channels)[:, None] + wo[None, :]
    return k, i, j
    # your code here /\


def im2col(inputs, kernel_size, padding):
    """Images (n, C, H, W) -> columns (n, C*K*K, Ho*Wo), zero padded by `padding`.

    Row c*K*K + ki*K + kj, column ho*Wo + wo holds x_padded[:, c, ho + ki, wo + kj].
    """
    # your code here \/
    # In memory the batch is the innermost axis: padded images (C, Hp, Wp, n), columns
    # (C*K*K, Ho*Wo*n). Each copy then moves whole rows of the batch (Wo*n values, not Wo),
    # and Conv2D multiplies the columns of the whole batch at once. Only the values of the
    # (n, C*K*K, Ho*Wo) result are the assignment's; its memory layout is free.
    n, channels, height, width = inputs.shape
    K = kernel_size
    padded = np.zeros((channels, height + 2 * padding, width + 2 * padding, n), dtype=inputs.dtype)
    padded[:, padding:padding + height, padding:padding + width] = inputs.transpose(1, 2, 3, 0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (K, K), axis=(1, 2))
    Ho, Wo = windows.shape[1:3]  # windows (C, Ho, Wo, n, K, K)
    matrix = windows.transpose(0, 4, 5, 1, 2, 3).reshape(channels * K * K, Ho * Wo, n)
    return matrix.transpose(2, 0, 1)
    # your code here /\


def col2im(cols, input_shape, kernel_size, padding):
    """Columns (n, C*K*K, Ho*Wo) -> images input_shape (n, C, H, W): the adjoint of im2col.

    Each column entry is added back where im2col read it (overlapping
    windows add up); the padding is cut off.
    """
    # your code here \/
    n, channels, height, width = input_shape
    K = kernel_size
    Ho, Wo = height + 2 * padding - K + 1, width + 2 * padding - K + 1
    cols = cols.transpose(1, 2, 0).reshape(channels, K, K, Ho, Wo, n)
    padded = np.zeros((channels, height + 2 * padding, width + 2 * padding, n), dtype=cols.dtype)
    for ki in range(K):
        for kj in range(K):
            padded[:, ki:ki + Ho, kj:kj + Wo] += cols[:, ki, kj]
    return padded[:, padding:padding + height, padding:padding + width].transpose(3, 0, 1, 2)
    # your code here /\


class Conv2D(Layer):
    """Cross-correlation with D kernels K x K, stride 1: (n, C, H, W) -> (n, D, Ho, Wo)."""

    def __init__(self, output_channels, kernel_size=3, padding='same', input_shape=None):
        super().__init__(input_shape)
        self.output_channels = output_channels
        self.kernel_size = kernel_size
        self.padding_mode = padding

    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        input_channels, input_height, input_width = self.input_shape
        K = self.kernel_size
        self.padding = determine_padding(K, self.padding_mode)
        self.output_shape = (self.output_channels, input_height + 2 * self.padding - K + 1,
                             input_width + 2 * self.padding - K + 1)
        self.kernels, self.kernels_grad = self.add_parameter(
            'kernels', (self.output_channels, input_channels, K, K),
            he_initializer(input_channels * K * K))
        self.biases, self.biases_grad = self.add_parameter(
            'biases', (self.output_channels,), np.zeros)

    def forward(self, inputs):
        """inputs (n, C, H, W) -> outputs (n, D, Ho, Wo)."""
        # your code here \/
        D, Ho, Wo = self.output_shape
        cols = im2col(inputs, self.kernel_size, self.padding)  # (n, C*K*K, Ho*Wo)
        self.input_matrix = cols.transpose(1, 2, 0).reshape(cols.shape[1], -1)  # (C*K*K, Ho*Wo*n)
        kernel_rows = self.kernels.reshape(D, -1)
        outputs = kernel_rows @ self.input_matrix + self.biases[:, None]  # (D, Ho*Wo*n)
        return outputs.reshape(D, Ho, Wo, len(inputs)).transpose(3, 0, 1, 2)  # a view, no copy
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, D, Ho, Wo) -> dL/dx (n, C, H, W).

        Fills self.kernels_grad (D, C, K, K) and self.biases_grad (D,),
        summed over positions and averaged over the batch.
        """
        # your code here \/
        n, D = grad_outputs.shape[:2]
        grad_rows = grad_outputs.transpose(1, 2, 3, 0).reshape(D, -1)  # (D, Ho*Wo*n)
        kernels_grad = (self.input_matrix @ grad_rows.T).T  # = grad_rows @ input_matrix.T, faster
        self.kernels_grad[...] = kernels_grad.reshape(self.kernels.shape) / n
        self.biases_grad[...] = np.sum(grad_rows, axis=1) / n
        grad_matrix = self.kernels.reshape(D, -1).T @ grad_rows  # (C*K*K, Ho*Wo*n)
        grad_cols = grad_matrix.reshape(len(grad_matrix), -1, n).transpose(2, 0, 1)
        return col2im(grad_cols, (n,) + self.input_shape, self.kernel_size, self.padding)
        # your code here /\


# ============================ 3.2 MaxPooling2D ==============================

class MaxPooling2D(Layer):
    """Maximum over K x K windows with stride K: (n, C, H, W) -> (n, C, H // K, W // K).

    When H or W is not a multiple of K, the last rows/columns are dropped.
    Backward gives each window's gradient to its maximal input; where several
    tie, to any one of them (or split among them, in shares adding up to it).
    """

    def __init__(self, pool_size=2, input_shape=None):
        super().__init__(input_shape)
        self.pool_size = pool_size

    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        channels, height, width = self.input_shape
        self.output_shape = (channels, height // self.pool_size, width // self.pool_size)

    def forward(self, inputs):
        """inputs (n, C, H, W) -> outputs (n, C, Ho, Wo); keeps each window's argmax."""
        # your code here \/
        _, Ho, Wo = self.output_shape
        K = self.pool_size
        outputs = inputs[:, :, :Ho * K:K, :Wo * K:K]  # the top-left element of every window
        self.argmax = np.zeros_like(outputs, dtype=np.int16)  # ki * K + kj of each maximum
        for k in range(1, K * K):
            ki, kj = divmod(k, K)
            candidates = inputs[:, :, ki:Ho * K:K, kj:Wo * K:K]  # element (ki, kj) of every window
            # where a candidate beats the maximum so far, its index k (above all before) wins
            self.argmax = np.maximum(self.argmax, (candidates > outputs) * np.int16(k))
            outputs = np.maximum(outputs, candidates)
        return outputs
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, C, Ho, Wo) -> dL/dx (n, C, H, W), nonzero only at the argmaxes."""
        # your code here \/
        _, _, Ho, Wo = grad_outputs.shape
        K = self.pool_size
        grad_inputs = np.zeros_like(self.forward_inputs, dtype=grad_outputs.dtype)
        for k in range(K * K):
            ki, kj = divmod(k, K)
            grad_inputs[:, :, ki:Ho * K:K, kj:Wo * K:K] = grad_outputs * (self.argmax == k)
        return grad_inputs
        # your code here /\


# ======================== 3.3 GlobalAveragePooling ==========================

class GlobalAveragePooling(Layer):
    """Mean of each channel: (n, C, H, W) -> (n, C)."""

    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        self.output_shape = self.input_shape[:1]

    def forward(self, inputs):
        """inputs (n, C, H, W) -> outputs (n, C)."""
        # your code here \/
        return np.mean(inputs, axis=(2, 3))
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, C) -> dL/dx (n, C, H, W)."""
        # your code here \/
        _, height, width = self.input_shape
        grad = grad_outputs[:, :, None, None] / (height * width)
        grad_inputs = np.empty_like(self.forward_inputs, dtype=grad.dtype)  # laid out like inputs
        grad_inputs[...] = grad
        return grad_inputs
        # your code here /\


# ========================= 3.4 BatchNormalization ===========================

class BatchNormalization(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel.

    Images (n, C, H, W) are normalized over n, H, W, vectors (n, d) over n.
    Training uses the batch mean and (biased) variance and updates
    running = momentum * running + (1 - momentum) * batch statistic;
    test mode uses running_mean, running_var and leaves them unchanged.
    """

    state_names = ('running_mean', 'running_var')

    def __init__(self, momentum=0.9, input_shape=None):
        super().__init__(input_shape)
        self.momentum = momentum

    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        channels = self.input_shape[0]
        self.eps = 1e-5
        self.gamma, self.gamma_grad = self.add_parameter('gamma', (channels,), np.ones)
        self.beta, self.beta_grad = self.add_parameter('beta', (channels,), np.zeros)
        self.running_mean = np.zeros(channels, dtype=np.float32)
        self.running_var = np.ones(channels, dtype=np.float32)

    def forward(self, inputs):
        """inputs (n, C, H, W) or (n, C) -> outputs of the same shape."""
        # your code here \/
        axes = (0,) + tuple(range(2, inputs.ndim))  # every axis but the channels
        shape = (1, -1) + (1,) * (inputs.ndim - 2)  # (C,) -> broadcasts against the inputs
        if self.is_training:  # sums of many float32 values are accumulated in float64
            mean = np.mean(inputs, axis=axes, dtype=np.float64)
            centered = inputs - np.reshape(mean, shape).astype(inputs.dtype)
            var = np.mean(np.square(centered), axis=axes, dtype=np.float64)
            self.running_mean[...] = self.momentum * self.running_mean + (1 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            mean, var = self.running_mean, self.running_var
            centered = inputs - np.reshape(mean, shape).astype(inputs.dtype)
        self.inv_std = np.reshape(1 / np.sqrt(var + self.eps), shape).astype(inputs.dtype)
        self.normalized = centered * self.inv_std
        return self.normalized * np.reshape(self.gamma, shape) + np.reshape(self.beta, shape)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy -> dL/dx, in training mode; fills gamma_grad, beta_grad (C,) averaged over n."""
        # your code here \/
        axes = (0,) + tuple(range(2, grad_outputs.ndim))
        n, m = len(grad_outputs), grad_outputs.size // len(self.gamma)  # batch, values per channel
        grad_beta = np.sum(grad_outputs, axis=axes, dtype=np.float64)
        grad_gamma = np.sum(grad_outputs * self.normalized, axis=axes, dtype=np.float64)
        self.beta_grad[...] = grad_beta / n
        self.gamma_grad[...] = grad_gamma / n
        shape, dtype = self.inv_std.shape, grad_outputs.dtype
        mean_grad = np.reshape(grad_beta / m, shape).astype(dtype)
        mean_grad_normalized = np.reshape(grad_gamma / m, shape).astype(dtype)
        scale = np.reshape(self.gamma, shape) * self.inv_std
        grad_inputs = grad_outputs - mean_grad  # in place from here: no more temporaries
        grad_inputs -= self.normalized * mean_grad_normalized
        grad_inputs *= scale
        return grad_inputs
        # your code here /\


# ============================== 3.5 Dropout =================================

class Dropout(Layer):
    """Training: zeroes each element with probability p, keeps the others as they are.

    Test mode multiplies every element by 1 - p instead.
    """

    def __init__(self, p, input_shape=None):
        super().__init__(input_shape)
        self.p = p

    def forward(self, inputs):
        """inputs (n, ...) -> outputs (n, ...); keeps the mask of kept elements."""
        # your code here \/
        if not self.is_training:
            return inputs * (1 - self.p)
        self.mask = np.random.random(inputs.shape) >= self.p
        return inputs * self.mask
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, ...) -> dL/dx (n, ...), zero where forward zeroed."""
        # your code here \/
        return grad_outputs * self.mask
        # your code here /\


# ============================== 3.6 Flatten =================================

class Flatten(Layer):
    """(n, D1, ..., Dk) -> (n, D1 * ... * Dk), in C order."""

    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        self.output_shape = (int(np.prod(self.input_shape)),)

    def forward(self, inputs):
        """inputs (n, D1, ..., Dk) -> outputs (n, D1 * ... * Dk)."""
        # your code here \/
        return inputs.reshape(len(inputs), -1)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, D1 * ... * Dk) -> dL/dx (n, D1, ..., Dk)."""
        # your code here \/
        return grad_outputs.reshape((len(grad_outputs),) + self.input_shape)
        # your code here /\


# ============================== 3.7 CIFAR-10 ================================

def train_cifar10_model(x_train, y_train, x_valid, y_valid, epochs=12):
    """Builds and trains a convolutional model on CIFAR-10; returns the trained Model.

    x_train (n, 3, 32, 32) float32 normalized to mean 0, std 1 per channel;
    y_train (n, 10) one-hot; likewise x_valid, y_valid. Test accuracy must
    exceed 70% and training must take under 60 minutes. The checking system
    calls it with the four arrays only; `epochs` is there for shorter runs.
    """
    # your code here \/
    def random_crops_and_flips(images, shift=4):
        """Each image moved by up to `shift` pixels (zeros come in), mirrored with
        probability 1/2."""
        n, _, height, width = images.shape
        padded = np.pad(images, ((0, 0), (0, 0), (shift, shift), (shift, shift)))
        crops = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(2, 3))
        rows, columns = np.random.randint(0, 2 * shift + 1, size=(2, n))
        images = crops[np.arange(n), :, rows, columns]  # (n, C, H, W)
        mirrored = np.random.random(n) < 0.5
        images[mirrored] = images[mirrored, :, :, ::-1]
        return images

    model = Model(CategoricalCrossentropy(), SGDMomentum(lr=0.1, momentum=0.9))
    # max pooling comes right after its convolution, so that batch norm and ReLU
    # work on 4 times fewer values (as in fast CIFAR-10 recipes)
    model.add(Conv2D(16, input_shape=(3, 32, 32)))
    model.add(MaxPooling2D())
    model.add(BatchNormalization())
    model.add(ReLU())
    model.add(Conv2D(64))
    model.add(BatchNormalization())
    model.add(ReLU())
    model.add(Conv2D(64))
    model.add(MaxPooling2D())
    model.add(BatchNormalization())
    model.add(ReLU())
    model.add(Conv2D(128))
    model.add(BatchNormalization())
    model.add(ReLU())
    model.add(Conv2D(128))
    model.add(MaxPooling2D())
    model.add(BatchNormalization())
    model.add(ReLU())
    model.add(GlobalAveragePooling())
    model.add(Dense(10))
    model.add(Softmax())
    # one cycle: the learning rate rises for the first quarter of the epochs, then falls to 0
    # (taken at the middle of each epoch)
    learning_rates = np.interp(np.arange(epochs) + 0.5, [0, epochs / 4, epochs], [0.04, 0.2, 0])
    for learning_rate in learning_rates:
        model.optimizer.lr = learning_rate
        epochs_done = len(model.loss_train_history)
        model.fit(random_crops_and_flips(x_train), y_train, batch_size=128, epochs=1,
                  x_valid=x_valid, y_valid=y_valid)
        if len(model.loss_train_history) == epochs_done:  # Ctrl-C, or ./run.py train --epochs
            break
    return model
    # your code here /\


# ============================== 4.1 LeakyReLU ===============================

class LeakyReLU(Layer):
    """y = max(alpha * x, x) for a slope 0 < alpha < 1, elementwise; any input shape."""

    def __init__(self, alpha=0.01, input_shape=None):
        super().__init__(input_shape)
        self.alpha = alpha

    def forward(self, inputs):
        """inputs (n, ...) -> outputs (n, ...)."""
        # your code here \/
        return np.where(inputs > 0, inputs, self.alpha * inputs)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, ...) -> dL/dx (n, ...): slope 1 where x > 0, alpha elsewhere."""
        # your code here \/
        return grad_outputs * np.where(self.forward_inputs > 0, 1.0, self.alpha)
        # your code here /\


# =============================== 4.2 RMSProp ================================

class RMSProp(Optimizer):
    """S <- rho * S + (1 - rho) * g^2;  P <- P - lr * g / (sqrt(S) + eps).

    g = dL/dP; the operations are elementwise and S = 0 at first.
    """

    def __init__(self, lr, rho=0.9, eps=1e-8):
        self.lr = lr
        self.rho = rho
        self.eps = eps

    def get_parameter_updater(self, parameter_shape):
        def updater(parameter, parameter_grad):
            """parameter, parameter_grad (parameter_shape) -> new parameter."""
            # your code here \/
            updater.mean_square = (self.rho * updater.mean_square
                                   + (1 - self.rho) * parameter_grad ** 2)
            return parameter - self.lr * parameter_grad / (np.sqrt(updater.mean_square) + self.eps)
            # your code here /\

        updater.mean_square = np.zeros(parameter_shape, dtype=np.float32)
        return updater


# ================================= 4.3 Adam =================================

class Adam(Optimizer):
    """Adam with bias correction; g = dL/dP, elementwise, m = v = 0 at first.

    At the t-th step of a parameter (t = 1, 2, ...):
    m <- beta1 * m + (1 - beta1) * g;  v <- beta2 * v + (1 - beta2) * g^2;
    m_hat = m / (1 - beta1^t);  v_hat = v / (1 - beta2^t);
    P <- P - lr * m_hat / (sqrt(v_hat) + eps).
    """

    def __init__(self, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps

    def get_parameter_updater(self, parameter_shape):
        def updater(parameter, parameter_grad):
            """parameter, parameter_grad (parameter_shape) -> new parameter."""
            # your code here \/
            updater.step += 1
            updater.m = self.beta1 * updater.m + (1 - self.beta1) * parameter_grad
            updater.v = self.beta2 * updater.v + (1 - self.beta2) * parameter_grad ** 2
            m_hat = updater.m / (1 - self.beta1 ** updater.step)
            v_hat = updater.v / (1 - self.beta2 ** updater.step)
            return parameter - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
            # your code here /\

        updater.step = 0
        updater.m = np.zeros(parameter_shape, dtype=np.float32)
        updater.v = np.zeros(parameter_shape, dtype=np.float32)
        return updater
