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

