"""A user plug-in: CartPole with a wind force redrawn every task, registered as a stream.

Name it in a run config's ``experiment.imports`` (a module name on the path, or this
file's path, e.g. ``imports = ["docs/examples/my_streams.py"]``), then use
``env.id = "user/WindyCartPole-v0"``; it is imported in every sweep worker too.
"""

import envs


class Wind:
    """A shift: one method that applies a task's parameters to the env."""

    def apply(self, env, params):
        env.unwrapped.force_mag = 10.0 + params["wind"]


def windy_cartpole(period=10_000, stationary=False, switch_at="reset", seed=0,
                   vector_size=1, autoreset_mode=None):
    return envs.make_nonstationary(
        "CartPole-v1", shift=Wind(),
        schedule=envs.RandomSchedule(period, {"wind": envs.Uniform(-5, 5)}, seed=seed),
        switch_at=switch_at, stationary=stationary, vector_size=vector_size,
        autoreset_mode=autoreset_mode)


envs.register_stream("user/WindyCartPole-v0", windy_cartpole,
                     description="CartPole with a wind force redrawn every 10k steps")
