# my_env.py: a custom ELM environment. Programs define f(x); it should follow x**3 - 2x on [-2, 2].
import numpy as np
from elm import DescriptorSpace, Environment, Evaluation, InvalidProgram, load_entry_point

XS = np.linspace(-2.0, 2.0, 41)  # where programs are tested
TARGET = XS**3 - 2.0 * XS  # what f should return there

class CurveFit(Environment):
    """Write f(x) that matches x**3 - 2x on [-2, 2]."""
    name = "curve_fit"
    entry_point = "f"  # the function every program defines

    @property
    def descriptor_space(self):  # behaviour axes of the archive: f(0) and the mean slope
        return DescriptorSpace(names=("value_at_0", "slope"), lower=(-3, -3), upper=(3, 3), bins=(12, 12))

    def seed_programs(self):  # the initial population; each must evaluate ok
        return ["def f(x):\n    return 1.0 * x\n", "def f(x):\n    return 0.5 * x * x * x - 1.0 * x\n"]

    def execute(self, source):  # in the sandbox, in the candidate's process: run it, return plain data
        f = load_entry_point(source, self.entry_point)
        return [float(f(x)) for x in XS.tolist()]

    def score(self, ys):  # in the sandbox, in a fresh process: check the output, compute the fitness
        ys = np.array(ys, dtype=float)  # non-finite floats arrive as the strings 'nan', 'inf'
        if ys.shape != XS.shape or not np.isfinite(ys).all():
            raise InvalidProgram("f(x) must return a finite number for every x")
        mse = float(np.mean((ys - TARGET) ** 2))
        slope = float((ys[-1] - ys[0]) / (XS[-1] - XS[0]))
        return Evaluation(fitness=1.0 / (1.0 + mse), descriptor=(ys[20], slope), info={"mse": mse})
