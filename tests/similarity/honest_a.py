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
        out = inputs.copy()
        out[out < 0] = 0
        return out
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, ...) -> dL/dx (n, ...)."""
        # your code here \/
        mask = self.forward_inputs > 0
        return np.where(mask, grad_outputs, 0.0)
        # your code here /\


# ============================== 2.1.2 Softmax ===============================

class Softmax(Layer):
    """y_i = exp(x_i) / sum_j exp(x_j) over the last axis of (n, d) inputs."""

    def forward(self, inputs):
        """inputs (n, d) -> outputs (n, d), each row sums to 1."""
        # your code here \/
        shifted = inputs - inputs.max(axis=-1)[:, None]
        e = np.exp(shifted)
        total = e.sum(axis=-1)[:, None]
        return e / total
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, d) -> dL/dx (n, d), using y = self.forward_outputs."""
        # your code here \/
        s = self.forward_outputs
        dot = (grad_outputs * s).sum(axis=-1)[:, None]
        return s * grad_outputs - s * dot
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
        out = np.dot(inputs, self.weights)
        out += self.biases[None, :]
        return out
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, units) -> dL/dx (n, c).

        Fills self.weights_grad (c, units) and self.biases_grad (units,),
        averaged over the batch.
        """
        # your code here \/
        batch = grad_outputs.shape[0]
        x = self.forward_inputs
        self.weights_grad[...] = np.dot(x.T, grad_outputs) / batch
        self.biases_grad[...] = grad_outputs.sum(axis=0) / batch
        return np.dot(grad_outputs, self.weights.T)
        # your code here /\


# ============================ 2.2.1 CrossEntropy ============================

class CategoricalCrossentropy(Loss):
    """L = -sum_i y_gt_i * ln(y_pred_i) for each sample."""

    def __call__(self, y_gt, y_pred):
        """y_gt, y_pred (n, d) -> per-sample losses (n,)."""
        # your code here \/
        eps = 1e-12
        logs = np.log(np.clip(y_pred, eps, None))
        return -(y_gt * logs).sum(axis=-1)
        # your code here /\

    def gradient(self, y_gt, y_pred):
        """y_gt, y_pred (n, d) -> dL/dy_pred (n, d) of each sample's loss."""
        # your code here \/
        eps = 1e-12
        return -y_gt / np.clip(y_pred, eps, None)
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
            step = self.lr * parameter_grad
            return parameter - step
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
            velocity = updater.inertia * self.momentum
            velocity += parameter_grad * self.lr
            updater.inertia = velocity
            return parameter - velocity
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
    loss = CategoricalCrossentropy()
    net = Model(loss, SGDMomentum(0.01, 0.9))
    net.add(Dense(256, input_shape=(x_train.shape[1],)))
    net.add(ReLU())
    net.add(Dense(128))
    net.add(ReLU())
    net.add(Dense(y_train.shape[1]))
    net.add(Softmax())
    net.fit(x_train, y_train, 32, 5, x_valid=x_valid, y_valid=y_valid)
    return net
    # your code here /\


# ============================== 3.1 Conv2D ==================================

def determine_padding(kernel_size, mode):
    """Padding P added on each side of an image for an odd kernel_size K.

    'same' keeps H and W, 'valid' adds none; any other mode is a ValueError.
    """
    # your code here \/
    paddings = {'same': kernel_size // 2, 'valid': 0}
    if mode not in paddings:
        raise ValueError(f"padding must be 'same' or 'valid', not {mode!r}")
    return paddings[mode]
    # your code here /\


def get_im2col_indices(input_shape, kernel_size, padding):
    """Indices (k, i, j) with x_padded[:, k, i, j] = im2col of x_padded, (n, C*K*K, Ho*Wo).

    input_shape is (n, C, H, W); k, i, j are integer arrays broadcastable to
    (C*K*K, Ho*Wo): row c*K*K + ki*K + kj, column ho*Wo + wo reads channel c,
    row ho + ki, column wo + kj of the padded images.
    """
    # your code here \/
    _, c, h, w = input_shape
    out_h = h + 2 * padding - kernel_size + 1
    out_w = w + 2 * padding - kernel_size + 1
    channel, row, col = np.meshgrid(np.arange(c), np.arange(kernel_size), np.arange(kernel_size),
                                    indexing='ij')
    out_row, out_col = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing='ij')
    k = channel.reshape(-1, 1)
    i = row.reshape(-1, 1) + out_row.reshape(1, -1)
    j = col.reshape(-1, 1) + out_col.reshape(1, -1)
    return k, i, j
    # your code here /\


def im2col(inputs, kernel_size, padding):
    """Images (n, C, H, W) -> columns (n, C*K*K, Ho*Wo), zero padded by `padding`.

    Row c*K*K + ki*K + kj, column ho*Wo + wo holds x_padded[:, c, ho + ki, wo + kj].
    """
    # your code here \/
    batch, chans, h, w = inputs.shape
    padded = np.zeros((batch, chans, h + 2 * padding, w + 2 * padding), dtype=inputs.dtype)
    padded[:, :, padding:padding + h, padding:padding + w] = inputs
    ch, r, c = get_im2col_indices(inputs.shape, kernel_size, padding)
    columns = padded[:, ch, r, c]
    return columns
    # your code here /\


def col2im(cols, input_shape, kernel_size, padding):
    """Columns (n, C*K*K, Ho*Wo) -> images input_shape (n, C, H, W): the adjoint of im2col.

    Each column entry is added back where im2col read it (overlapping
    windows add up); the padding is cut off.
    """
    # your code here \/
    batch, channels, height, width = input_shape
    full_h, full_w = height + 2 * padding, width + 2 * padding
    ch, r, c = get_im2col_indices(input_shape, kernel_size, padding)
    flat = (ch * full_h + r) * full_w + c
    size = channels * full_h * full_w
    offsets = np.arange(batch)[:, None, None] * size
    summed = np.bincount((flat + offsets).ravel(), weights=cols.ravel(), minlength=batch * size)
    full = summed.reshape(batch, channels, full_h, full_w).astype(cols.dtype)
    return full[:, :, padding:padding + height, padding:padding + width]
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
        self.columns = im2col(inputs, self.kernel_size, self.padding)
        weights = self.kernels.reshape(self.output_channels, -1)
        out = np.einsum('dk,nkp->ndp', weights, self.columns) + self.biases[None, :, None]
        return out.reshape((len(inputs),) + tuple(self.output_shape))
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, D, Ho, Wo) -> dL/dx (n, C, H, W).

        Fills self.kernels_grad (D, C, K, K) and self.biases_grad (D,),
        summed over positions and averaged over the batch.
        """
        # your code here \/
        batch = grad_outputs.shape[0]
        grads = grad_outputs.reshape(batch, self.output_channels, -1)
        kernel_grad = np.einsum('ndp,nkp->dk', grads, self.columns)
        self.kernels_grad[...] = kernel_grad.reshape(self.kernels.shape) / batch
        self.biases_grad[...] = grads.sum(axis=(0, 2)) / batch
        weights = self.kernels.reshape(self.output_channels, -1)
        grad_columns = np.einsum('dk,ndp->nkp', weights, grads)
        shape = (batch,) + tuple(self.input_shape)
        return col2im(grad_columns, shape, self.kernel_size, self.padding)
        # your code here /\


# ============================ 3.2 MaxPooling2D ==============================

class MaxPooling2D(Layer):
    """Maximum over K x K windows with stride K: (n, C, H, W) -> (n, C, H // K, W // K).

    When H or W is not a multiple of K, the last rows/columns are dropped.
    Backward gives each window's gradient to one of its maximal inputs.
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
        k = self.pool_size
        n, c, h, w = inputs.shape
        oh, ow = h // k, w // k
        windows = inputs[:, :, :oh * k, :ow * k].reshape(n, c, oh, k, ow, k)
        windows = windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, k * k)
        self.winner = np.argmax(windows, axis=-1)
        return np.take_along_axis(windows, self.winner[..., None], axis=-1)[..., 0]
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, C, Ho, Wo) -> dL/dx (n, C, H, W), nonzero only at the argmaxes."""
        # your code here \/
        k = self.pool_size
        n, c, oh, ow = grad_outputs.shape
        spread = np.zeros((n, c, oh, ow, k * k), dtype=grad_outputs.dtype)
        np.put_along_axis(spread, self.winner[..., None], grad_outputs[..., None], axis=-1)
        blocks = spread.reshape(n, c, oh, ow, k, k).transpose(0, 1, 2, 4, 3, 5)
        blocks = blocks.reshape(n, c, oh * k, ow * k)
        grad = np.zeros(self.forward_inputs.shape, dtype=grad_outputs.dtype)
        grad[:, :, :oh * k, :ow * k] = blocks
        return grad
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
        return inputs.mean(axis=-1).mean(axis=-1)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, C) -> dL/dx (n, C, H, W)."""
        # your code here \/
        h, w = self.forward_inputs.shape[2:]
        ones = np.ones((1, 1, h, w), dtype=grad_outputs.dtype)
        return grad_outputs[:, :, None, None] * ones / (h * w)
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
        if inputs.ndim == 4:
            axes, view = (0, 2, 3), (1, -1, 1, 1)
        else:
            axes, view = (0,), (1, -1)
        self.view, self.axes = view, axes
        if self.is_training:
            mu = inputs.mean(axis=axes)
            sigma2 = inputs.var(axis=axes)
            self.running_mean[...] = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var[...] = self.momentum * self.running_var + (1 - self.momentum) * sigma2
        else:
            mu, sigma2 = self.running_mean, self.running_var
        self.std_inv = 1.0 / np.sqrt(sigma2 + self.eps).reshape(view)
        self.x_hat = (inputs - mu.reshape(view)) * self.std_inv
        return self.gamma.reshape(view) * self.x_hat + self.beta.reshape(view)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy -> dL/dx, in training mode; fills gamma_grad, beta_grad (C,) averaged over n."""
        # your code here \/
        axes, view = self.axes, self.view
        m = grad_outputs.size // self.gamma.size
        n = grad_outputs.shape[0]
        self.gamma_grad[...] = (grad_outputs * self.x_hat).sum(axis=axes) / n
        self.beta_grad[...] = grad_outputs.sum(axis=axes) / n
        g = grad_outputs * self.gamma.reshape(view)
        g_sum = g.sum(axis=axes, keepdims=True)
        g_dot = (g * self.x_hat).sum(axis=axes, keepdims=True)
        return self.std_inv / m * (m * g - g_sum - self.x_hat * g_dot)
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
        if self.is_training:
            self.mask = (np.random.uniform(size=inputs.shape) >= self.p).astype(inputs.dtype)
            return inputs * self.mask
        return inputs * (1.0 - self.p)
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, ...) -> dL/dx (n, ...), zero where forward zeroed."""
        # your code here \/
        return self.mask * grad_outputs
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
        return np.reshape(inputs, (inputs.shape[0], -1))
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, D1 * ... * Dk) -> dL/dx (n, D1, ..., Dk)."""
        # your code here \/
        return np.reshape(grad_outputs, self.forward_inputs.shape)
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
    model = Model(CategoricalCrossentropy(), SGDMomentum(lr=0.05, momentum=0.9))
    model.add(Conv2D(32, input_shape=x_train.shape[1:]))
    model.add(BatchNormalization())
    model.add(ReLU())
    model.add(MaxPooling2D())
    model.add(Conv2D(64))
    model.add(BatchNormalization())
    model.add(ReLU())
    model.add(MaxPooling2D())
    model.add(Conv2D(128))
    model.add(ReLU())
    model.add(GlobalAveragePooling())
    model.add(Dropout(0.3))
    model.add(Dense(10))
    model.add(Softmax())
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, x_valid=x_valid, y_valid=y_valid)
    return model
    # your code here /\
