"""scaledql: Scaled Q-Learning — offline multi-game Q-learning that scales.

Data flows one way: suites → data → models/losses → agents → training → evaluation → reports;
``cli`` is a thin shell on top.
"""

__version__ = "0.1.0"
