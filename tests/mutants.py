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
    Edit('softmax', 'max subtracted over the whole batch, not per row',
         'exps = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))',
         'exps = np.exp(inputs - np.max(inputs))'),
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
         'return parameter - self.lr * parameter_grad', 'return parameter + self.lr * parameter_grad'),
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
]

VARIANTS = [
    Edit('relu', 'gradient 1 at x == 0 (the subgradient is ambiguous there)',
         'return grad_outputs * (self.forward_inputs > 0)',
         'return grad_outputs * (self.forward_inputs >= 0)'),
    Edit('relu', 'gradient through the outputs instead of the inputs',
         'return grad_outputs * (self.forward_inputs > 0)',
         'return np.where(self.forward_outputs > 0, grad_outputs, 0)'),
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
]
