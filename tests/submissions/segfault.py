# Softmax.backward crashes the interpreter.
import ctypes


class Softmax(Softmax):
    def backward(self, grad_outputs):
        return ctypes.string_at(0)
