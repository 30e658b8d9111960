"""Your solution: fill in every region between the "your code here" markers.

Only this file is uploaded to the checking system. Code outside the markers
is given: keep it as it is. Every array starts with the batch dimension n;
images are (n, C, H, W).
"""
import numpy as np

from interface import Layer, Loss, Model, Optimizer, he_initializer


# ================================ 2.1 Layers ================================

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


# ============================== 2.2 Loss ====================================

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


# ============================ 2.3 Optimizers ================================

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
