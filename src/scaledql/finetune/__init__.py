"""Transfer experiments of the paper's second half: fine-tuning a pretrained Scaled QL network.

- ``new_games``: to games the pretrained run never saw, on a (limited) offline store of them —
  arms: the pretrained encoder fine-tuned or frozen, the same network from scratch, an
  MAE-pretrained encoder, behaviour cloning (``finetune.new_games``);
- ``variants``: to a variant of a game (ALE mode/difficulty; MinAtar sticky-action rate) by
  ε-greedy interaction — arms: pretrained, scratch, MAE, a single-game online DQN
  (``finetune.variants``);
- a report per experiment folder: final normalized scores with CIs over seeds × games,
  learning curves, the improvement over the best alternative (``finetune.report``).

Every arm × seed (× game) is a normal, resumable run folder under ``OUT/<arm>/``; the
experiment's description is ``OUT/finetune.json``.
"""
