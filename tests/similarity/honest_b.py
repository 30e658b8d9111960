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
        result = np.array(inputs, copy=True)
        np.clip(result, 0, None, out=result)
        return result
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, ...) -> dL/dx (n, ...)."""
        # your code here \/
        x = self.forward_inputs
        grad = np.zeros_like(grad_outputs)
        positive = x > 0
        grad[positive] = grad_outputs[positive]
        return grad
        # your code here /\


# ============================== 2.1.2 Softmax ===============================

class Softmax(Layer):
    """y_i = exp(x_i) / sum_j exp(x_j) over the last axis of (n, d) inputs."""

    def forward(self, inputs):
        """inputs (n, d) -> outputs (n, d), each row sums to 1."""
        # your code here \/
        m = np.amax(inputs, axis=1, keepdims=True)
        numerators = np.exp(inputs - m)
        denominators = numerators.sum(axis=1, keepdims=True)
        probabilities = numerators / denominators
        return probabilities
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, d) -> dL/dx (n, d), using y = self.forward_outputs."""
        # your code here \/
        p = self.forward_outputs
        d = p.shape[1]
        jac = np.einsum('ni,ij->nij', p, np.eye(d)) - np.einsum('ni,nj->nij', p, p)
        return np.einsum('nij,nj->ni', jac, grad_outputs)
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
        batch_size = inputs.shape[0]
        result = np.matmul(inputs, self.weights)
        return result + np.tile(self.biases, (batch_size, 1))
        # your code here /\

    def backward(self, grad_outputs):
        """dL/dy (n, units) -> dL/dx (n, c).

        Fills self.weights_grad (c, units) and self.biases_grad (units,),
        averaged over the batch.
        """
        # your code here \/
        m = grad_outputs.shape[0]
        self.weights_grad[...] = np.einsum('ni,nj->ij', self.forward_inputs, grad_outputs) / m
        self.biases_grad[...] = np.average(grad_outputs, axis=0)
        grad_inputs = np.einsum('nj,ij->ni', grad_outputs, self.weights)
        return grad_inputs
        # your code here /\


# ============================ 2.2.1 CrossEntropy ============================

class CategoricalCrossentropy(Loss):
    """L = -sum_i y_gt_i * ln(y_pred_i) for each sample."""

    def __call__(self, y_gt, y_pred):
        """y_gt, y_pred (n, d) -> per-sample losses (n,)."""
        # your code here \/
        safe = np.where(y_pred > 1e-10, y_pred, 1e-10)
        per_class = y_gt * np.log(safe)
        return -np.einsum('nd->n', per_class)
        # your code here /\

    def gradient(self, y_gt, y_pred):
        """y_gt, y_pred (n, d) -> dL/dy_pred (n, d) of each sample's loss."""
        # your code here \/
        safe = np.where(y_pred > 1e-10, y_pred, 1e-10)
        return -(y_gt / safe)
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
            new_value = parameter.copy()
            new_value -= parameter_grad * self.lr
            return new_value
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
            updater.inertia *= self.momentum
            updater.inertia += self.lr * parameter_grad
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
    optimizer = SGDMomentum(lr=0.05, momentum=0.8)
    model = Model(CategoricalCrossentropy(), optimizer)
    hidden = 300
    model.add(Dense(hidden, input_shape=(784,)))
    model.add(ReLU())
    model.add(Dense(10))
    model.add(Softmax())
    model.fit(x_train, y_train, batch_size=128, epochs=10, x_valid=x_valid, y_valid=y_valid)
    return model
    # your code here /\
