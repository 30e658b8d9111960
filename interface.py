"""The given framework: abstract Layer, Loss and Optimizer, the sequential Model.

Read this file first; you do not edit it: your code goes into solution.py.
Shapes use the batch dimension first: a layer with input_shape (d,) takes
arrays (n, d), one with input_shape (C, H, W) takes images (n, C, H, W).
"""
import json
import numbers
import sys
import time
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


def read_only(array):
    """A read-only view of `array`: writing into it raises ValueError."""
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


def he_initializer(input_dim):
    """Initializer for weights that feed `input_dim` inputs into a ReLU.

    Returns init(shape) -> float32 array of that shape, normal with mean 0 and
    std sqrt(2 / input_dim) (He et al., 2015).
    """
    def init(shape):
        return np.random.normal(0.0, np.sqrt(2.0 / input_dim), size=shape).astype(np.float32)
    return init


def normal_initializer(std=0.01):
    """The original course kit's initializer: init(shape) -> float32 normal, mean 0, std `std`."""
    def init(shape):
        return np.random.normal(0.0, std, size=shape).astype(np.float32)
    return init


def conv_initializer(filters, channels):
    """The original course kit's initializer of Conv2D kernels (filters, channels, K, K).

    He initialization for the fan-in channels * K * K (K read from the shape).
    """
    def init(shape):
        if tuple(shape[:2]) != (filters, channels):
            raise ValueError(f"conv_initializer({filters}, {channels}) got shape {tuple(shape)}, "
                             f"expected ({filters}, {channels}, K, K)")
        return he_initializer(int(np.prod(shape[1:])))(shape)
    return init


class Rebuildable:
    """Remembers its constructor's arguments, so that Model.load can rebuild it."""

    def __new__(cls, *args, **kwargs):
        instance = super().__new__(cls)
        instance.constructor_arguments = (args, kwargs)
        return instance


class Optimizer(Rebuildable, ABC):
    """Makes one updater per trainable parameter."""

    @abstractmethod
    def get_parameter_updater(self, parameter_shape):
        """Returns updater(parameter, parameter_grad) -> new parameter.

        Both arguments and the result have shape `parameter_shape`; state
        that a method keeps between steps (momentum) lives in the updater.
        """


class Loss(Rebuildable, ABC):
    """A loss between ground truth y_gt and prediction y_pred, both (n, d)."""

    @abstractmethod
    def __call__(self, y_gt, y_pred):
        """Per-sample losses, shape (n,)."""

    @abstractmethod
    def gradient(self, y_gt, y_pred):
        """dL/dy_pred of each sample's own loss, shape (n, d)."""


class Layer(Rebuildable, ABC):
    """One layer of a sequential network.

    input_shape and output_shape are shapes of one sample, without the
    batch dimension. Parameters are registered in build() with
    add_parameter() and kept as self.<name>, their gradients as
    self.<name>_grad (averaged over the batch). Arrays that are not trained
    but needed at test time (running statistics) are listed in state_names
    and kept as self.<name>; Model.save stores them with the parameters.
    """

    state_names = ()

    def __init__(self, input_shape=None):
        if isinstance(input_shape, numbers.Integral):  # ReLU(100), as the original kit allowed
            input_shape = (input_shape,)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.output_shape = None
        self.is_training = True
        self.optimizer = None
        self.parameter_updaters = {}

    @property
    def name(self):
        """The layer's name in messages: its class name, unless set (self.name = "ReLU")."""
        return self.__dict__.get('_name', type(self).__name__)

    @name.setter
    def name(self, name):
        self._name = str(name)

    @property
    def training(self):
        """is_training under the original course kit's name."""
        return self.is_training

    @training.setter
    def training(self, is_training):
        self.is_training = is_training

    def __getattr__(self, attribute):
        """Only reached for a missing attribute: says why it is missing."""
        if attribute in ('forward_inputs', 'forward_outputs'):
            hint = ("call the layer as layer(inputs), which runs forward(inputs) and keeps both "
                    "(layer.forward(inputs) alone does not)")
        elif not attribute.startswith('__') and self.__dict__.get('output_shape') is None:
            hint = ("the layer is not built: add it to a model with model.add(layer), which "
                    "builds it (the first layer needs input_shape=...)")
        else:
            raise AttributeError(f"{self.name!r} object has no attribute {attribute!r}")
        raise AttributeError(f"{self.name}.{attribute} is not set: {hint}")

    @property
    def parameter_names(self):
        """Names of the registered parameters, in registration order."""
        return list(self.parameter_updaters)

    def build(self, optimizer, prev_layer=None):
        """Fixes input_shape (from prev_layer) and output_shape.

        output_shape becomes input_shape, unless __init__ set it (the original
        course kit's Dense sets (units,) there). Subclasses that register
        parameters or change the shape override build and call
        super().build(optimizer, prev_layer) first.
        """
        output_shape = self.output_shape if self.optimizer is None else None  # set before any build
        self.optimizer = optimizer
        if prev_layer is not None:
            self.input_shape = tuple(prev_layer.output_shape)
        elif self.input_shape is None:
            raise ValueError(
                f"{self.name}: the first layer of a model needs input_shape, "
                f"e.g. {self.name}(..., input_shape=(784,))")
        self.output_shape = self.input_shape if output_shape is None else tuple(output_shape)

    def add_parameter(self, name, shape, initializer):
        """Registers a trainable parameter; returns (parameter, zero gradient).

        Keep them as self.<name> and self.<name>_grad:
            self.weights, self.weights_grad = self.add_parameter(...)
        """
        if self.optimizer is None:
            raise RuntimeError(
                f"{self.name}.add_parameter('{name}'): call it inside build(), "
                f"after super().build(optimizer, prev_layer)")
        shape = tuple(shape)
        parameter = np.asarray(initializer(shape), dtype=np.float32)
        if parameter.shape != shape:
            raise ValueError(f"{self.name}: initializer of '{name}' gave shape "
                             f"{parameter.shape}, expected {shape}")
        self.parameter_updaters[name] = self.optimizer.get_parameter_updater(shape)
        return parameter, np.zeros_like(parameter)

    def update_parameters(self):
        """Steps every parameter with its updater and its current gradient."""
        for name, updater in self.parameter_updaters.items():
            parameter = self._registered_array(name)
            gradient = self._registered_array(name + '_grad', parameter.shape)
            if not np.all(np.isfinite(gradient)):
                raise FloatingPointError(
                    f"{self.name}.{name}_grad has NaN or inf: check backward() "
                    f"or lower the learning rate")
            new_parameter = np.asarray(updater(parameter, gradient))
            if new_parameter.shape != parameter.shape:
                raise ValueError(f"{self.name}: the updater of '{name}' returned shape "
                                 f"{new_parameter.shape}, expected {parameter.shape}")
            if not np.all(np.isfinite(new_parameter)):
                raise FloatingPointError(f"{self.name}.{name} became NaN or inf after the "
                                         f"update: lower the learning rate")
            parameter[...] = new_parameter

    def _registered_array(self, attribute, shape=None):
        array = getattr(self, attribute, None)
        if not isinstance(array, np.ndarray):
            raise AttributeError(
                f"{self.name}.{attribute} is missing or not an ndarray: keep the "
                f"pair returned by add_parameter() as self.<name>, self.<name>_grad")
        if shape is not None and array.shape != shape:
            raise ValueError(f"{self.name}.{attribute} has shape {array.shape}, "
                             f"expected {shape}")
        return array

    def __call__(self, inputs):
        """Forward pass that keeps read-only forward_inputs/forward_outputs."""
        if self.output_shape is None:
            raise RuntimeError(f"{self.name} is not built: add it to a model with "
                               f"model.add(layer), which builds it (the first layer needs "
                               f"input_shape=...)")
        inputs = np.asarray(inputs)
        self._check_shape('input', inputs, self.input_shape)
        self.forward_inputs = read_only(inputs)
        outputs = self.forward(self.forward_inputs)
        if outputs is None:
            raise TypeError(f"{self.name}.forward() returned None: return the outputs")
        outputs = np.asarray(outputs)
        self._check_shape('output', outputs, self.output_shape, len(inputs))
        self.forward_outputs = read_only(outputs)
        return self.forward_outputs

    def _check_shape(self, what, array, sample_shape, n=None):
        if array.ndim == 0 or array.shape[1:] != tuple(sample_shape) or n not in (None, len(array)):
            expected = ", ".join(["n" if n is None else str(n)] + [str(d) for d in sample_shape])
            raise ValueError(f"{self.name}: {what} of shape {array.shape}, expected ({expected})")

    @abstractmethod
    def forward(self, inputs):
        """inputs (n, *input_shape) -> outputs (n, *output_shape)."""

    @abstractmethod
    def backward(self, grad_outputs):
        """dL/doutputs (n, *output_shape) -> dL/dinputs (n, *input_shape).

        Also fills self.<name>_grad for every parameter, averaged over the
        batch. Uses the values kept by the last forward pass.
        """

    def __repr__(self):
        return f"{self.name}(input_shape={self.input_shape}, output_shape={self.output_shape})"


class Model:
    """A sequential network trained by minibatch gradient descent (Keras-like)."""

    epoch_limit = None  # ./run.py train --epochs N sets it: fit() stops after N epochs in all

    def __init__(self, loss, optimizer):
        self.loss = loss
        self.optimizer = optimizer
        self.layers = []
        self.loss_train_history = []
        self.loss_valid_history = []
        self.accuracy_train_history = []
        self.accuracy_valid_history = []
        self.interrupted = False  # set when Ctrl-C stopped fit()

    def add(self, layer):
        """Builds `layer` on top of the last one and appends it."""
        layer.build(self.optimizer, self.layers[-1] if self.layers else None)
        self.layers.append(layer)

    def set_training(self, is_training):
        for layer in self.layers:
            layer.is_training = is_training

    def forward(self, x):
        """x (n, *input_shape) -> predictions (n, *output_shape)."""
        if not self.layers:
            raise RuntimeError("Model has no layers: call model.add(...) first")
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, y_gt):
        """Backpropagates the loss of the last forward pass through all layers."""
        grad = self.loss.gradient(y_gt, self.layers[-1].forward_outputs)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
            expected = (len(y_gt),) + layer.input_shape
            if np.shape(grad) != expected:
                raise ValueError(f"{layer.name}: backward() returned shape {np.shape(grad)}, "
                                 f"expected {expected}")

    def fit_batch(self, x, y):
        """One training step on a batch; returns (mean loss, accuracy) on it."""
        y_pred = self.forward(x)
        self.backward(y)
        for layer in self.layers:
            layer.update_parameters()
        return self.get_metrics(y, y_pred)

    def get_metrics(self, y_gt, y_pred):
        """(mean loss, accuracy) of predictions y_pred (n, d) against one-hot y_gt."""
        losses = self.loss(y_gt, y_pred)
        if not np.all(np.isfinite(losses)):
            raise FloatingPointError("the loss is NaN or inf: lower the learning rate "
                                     "or check the layers' backward()")
        accuracy = np.mean(np.argmax(y_pred, axis=1) == np.argmax(y_gt, axis=1))
        return float(np.mean(losses)), float(accuracy)

    def fit(self, x_train, y_train, batch_size, epochs, shuffle=True, verbose=True,
            x_valid=None, y_valid=None):
        """Trains for `epochs` passes over the data; Ctrl-C stops it cleanly.

        After each epoch appends the mean train loss/accuracy and, when
        validation data is given, the validation ones to the histories.
        When Model.epoch_limit is set, stops once the histories hold that
        many epochs.
        """
        first = len(self.loss_train_history)
        last = first + epochs if self.epoch_limit is None else min(first + epochs, self.epoch_limit)
        try:
            for epoch in range(first, last):
                start = time.perf_counter()
                line = self.fit_epoch(x_train, y_train, batch_size, shuffle, verbose,
                                      f"epoch {epoch + 1}")
                if x_valid is not None:
                    loss, accuracy = self.evaluate(x_valid, y_valid, batch_size)
                    self.loss_valid_history.append(loss)
                    self.accuracy_valid_history.append(accuracy)
                    line += f"; valid loss {loss:.4f}, accuracy {accuracy:.4f}"
                if verbose:
                    print(f"{line} ({time.perf_counter() - start:.1f} s)", flush=True)
        except KeyboardInterrupt:
            self.interrupted = True
            print(f"\ntraining interrupted: the model keeps its weights and the histories of "
                  f"its {len(self.loss_train_history)} finished epochs", file=sys.stderr)
        finally:
            self.set_training(False)

    def fit_epoch(self, x, y, batch_size, shuffle, verbose, title):
        """One pass over x (n, ...), y (n, d) in minibatches, in training mode.

        Appends the epoch's mean loss and accuracy to the train histories and
        returns them as a line of text.
        """
        self.set_training(True)
        n = len(x)
        order = np.random.permutation(n) if shuffle else np.arange(n)
        total_loss = total_correct = seen = 0
        with Progress(-(-n // batch_size), title, verbose) as progress:
            for i in range(0, n, batch_size):
                index = order[i:i + batch_size]
                loss, accuracy = self.fit_batch(x[index], y[index])
                seen += len(index)
                total_loss += loss * len(index)
                total_correct += accuracy * len(index)
                progress.step(loss=total_loss / seen, accuracy=total_correct / seen)
        self.loss_train_history.append(total_loss / n)
        self.accuracy_train_history.append(total_correct / n)
        return f"{title}: train loss {total_loss / n:.4f}, accuracy {total_correct / n:.4f}"

    def predict(self, x, batch_size=256):
        """Outputs of the network in test mode, batch by batch, (n, *output_shape)."""
        self.set_training(False)
        return np.concatenate([np.asarray(self.forward(x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)])

    def evaluate(self, x, y, batch_size=256):
        """(mean loss, accuracy) in test mode over all of x, the last partial batch too."""
        return self.get_metrics(y, self.predict(x, batch_size))

    def __str__(self):
        """The layers with their output shapes and parameter counts, and the total."""
        rows = [('layer', 'output shape', 'parameters')]
        if self.layers:
            rows.append(('input', batch_shape(self.layers[0].input_shape), ''))
        counts = [sum(getattr(layer, name).size for name in layer.parameter_names)
                  for layer in self.layers]
        rows += [(constructor_call(layer), batch_shape(layer.output_shape), f"{count:,}")
                 for layer, count in zip(self.layers, counts)]
        rows.append(('total', '', f"{sum(counts):,}"))
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        lines = [f"{layer:{widths[0]}}  {shape:{widths[1]}}  {count:>{widths[2]}}"
                 for layer, shape, count in rows]
        return '\n'.join([f"Model: loss {constructor_call(self.loss)}, "
                          f"optimizer {constructor_call(self.optimizer)}"] + lines)

    def summary(self):
        """Prints the layers, their output shapes and parameter counts (same as print(model))."""
        print(self)

    def print_parameters(self):
        """summary() under the original course kit's name."""
        self.summary()

    def save(self, path):
        """Writes the model to one .npz file at `path`, for Model.load.

        The file holds every layer's parameters and state arrays (running
        statistics) and, as JSON, how to rebuild the loss, the optimizer and
        the layers (class names and constructor arguments) and the histories.
        Optimizer state such as momentum is not saved.
        """
        architecture = {
            'format': MODEL_FILE_FORMAT,
            'loss': rebuild_recipe(self.loss),
            'optimizer': rebuild_recipe(self.optimizer),
            'layers': [rebuild_recipe(layer) for layer in self.layers],
            'histories': {name: getattr(self, name) for name in HISTORIES},
        }
        arrays = {f"layer{number}.{name}": array for number, layer in enumerate(self.layers)
                  for name, array in saved_arrays(layer).items()}
        with open(path, 'wb') as file:
            np.savez(file, architecture=np.array(json.dumps(architecture)), **arrays)

    @classmethod
    def load(cls, path):
        """A new Model read from a file written by Model.save.

        Classes are found by name among the Layer, Loss and Optimizer
        subclasses defined so far (import solution first); the model predicts
        exactly as the saved one did.
        """
        architecture, arrays = read_model_file(path)
        model = cls(rebuild(Loss, architecture['loss']),
                    rebuild(Optimizer, architecture['optimizer']))
        for number, recipe in enumerate(architecture['layers']):
            model.add(rebuild(Layer, recipe))
            for name, array in saved_arrays(model.layers[-1]).items():
                saved = arrays.get(f"layer{number}.{name}")
                if saved is None or saved.shape != array.shape:
                    raise ValueError(f"{path}: layer {number} {model.layers[-1].name}.{name} "
                                     f"of shape {array.shape} is missing or has another shape "
                                     f"in the file")
                array[...] = saved
        for name in HISTORIES:
            setattr(model, name, list(architecture['histories'][name]))
        return model


MODEL_FILE_FORMAT = 'numpy-nn-kit model 1'
HISTORIES = ('loss_train_history', 'loss_valid_history',
             'accuracy_train_history', 'accuracy_valid_history')


def batch_shape(shape):
    """'(n, 32, 16, 16)' for a sample shape (32, 16, 16)."""
    return f"({', '.join(['n', *map(str, shape)])})"


def constructor_call(component):
    """How a layer, loss or optimizer was made, e.g. 'Dense(10, input_shape=(784,))'."""
    args, kwargs = getattr(component, 'constructor_arguments', ((), {}))
    shown = [repr(value) for value in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
    return f"{type(component).__name__}({', '.join(shown)})"


def json_value(value):
    """json.dumps(default=...): numpy numbers and arrays as plain ones; nothing else."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{value!r} is not a number, string, list or dict")


def rebuild_recipe(component):
    """{'class': name, 'args': [...], 'kwargs': {...}} of a layer, loss or optimizer."""
    if not isinstance(component, Rebuildable):
        raise TypeError(f"Model.save: {type(component).__name__} is not a Layer, Loss or "
                        f"Optimizer subclass, so it cannot be rebuilt")
    args, kwargs = component.constructor_arguments
    recipe = {'class': type(component).__name__, 'args': args, 'kwargs': kwargs}
    try:
        return json.loads(json.dumps(recipe, default=json_value))
    except TypeError as error:
        raise TypeError(f"Model.save: {constructor_call(component)} has a constructor argument "
                        f"that cannot be saved: {error}") from None


def subclasses(base):
    """All subclasses of `base` defined so far, recursively."""
    for subclass in base.__subclasses__():
        yield subclass
        yield from subclasses(subclass)


def rebuild(base, recipe):
    """A new instance of the `base` subclass named in recipe (the last defined of that name).

    JSON lists among the arguments become tuples again (shapes, sizes).
    """
    found = [subclass for subclass in subclasses(base) if subclass.__name__ == recipe['class']]
    if not found:
        raise ValueError(f"Model.load: no {base.__name__} subclass named {recipe['class']} is "
                         f"defined: import the module that defines it first (import solution)")
    args = [tuple(value) if isinstance(value, list) else value for value in recipe['args']]
    kwargs = {key: tuple(value) if isinstance(value, list) else value
              for key, value in recipe['kwargs'].items()}
    try:
        return found[-1](*args, **kwargs)
    except TypeError as error:
        raise ValueError(f"Model.load: cannot rebuild {recipe['class']} with the saved "
                         f"arguments {recipe['args']}, {recipe['kwargs']}: {error}") from None


def saved_arrays(layer):
    """{name: array} of the layer's parameters and state arrays, as Model.save stores them."""
    arrays = {name: getattr(layer, name, None)
              for name in layer.parameter_names + list(layer.state_names)}
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):
            raise AttributeError(f"{layer.name}.{name} is missing or not an ndarray")
    return arrays


def read_model_file(path):
    """(architecture dict, {name: array}) of a file written by Model.save; no pickles."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a model written by Model.save: not an .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if 'architecture' not in arrays:
            raise ValueError("it has no architecture")
        architecture = json.loads(str(arrays.pop('architecture')))
        if not isinstance(architecture, dict) or architecture.get('format') != MODEL_FILE_FORMAT:
            raise ValueError(f"its architecture is not of format {MODEL_FILE_FORMAT!r}")
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a model written by Model.save: {error}") from None
    return architecture, arrays


def tqdm_class():
    """tqdm's bar, or None without tqdm (imported on first use: it is slow to import)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress falls back to plain lines
        return None
    return tqdm


class Progress:
    """A tqdm bar on a terminal or in a notebook, otherwise a plain line every 10 s."""

    def __init__(self, total, description, enabled=True):
        self.total, self.done, self.description = total, 0, description
        self.enabled = enabled
        self.bar = None
        tqdm = tqdm_class() if enabled else None
        if tqdm is not None:
            self.bar = tqdm(total=total, desc=description, unit='batch', leave=False, disable=None)
            if self.bar.disable:
                self.bar = None
        self.last_line = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        if self.bar is not None:
            self.bar.close()

    def step(self, **values):
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()}, refresh=False)
            self.bar.update()
        elif self.enabled and time.perf_counter() - self.last_line > 10:
            self.last_line = time.perf_counter()
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"{self.description}: {self.done}/{self.total} batches, {shown}", flush=True)
