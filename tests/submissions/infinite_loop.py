# ReLU.forward never returns.
class ReLU(ReLU):
    def forward(self, inputs):
        while True:
            pass
