"""A small plain-PyTorch trainer for rsb-tune: a one-hidden-layer MLP on scikit-learn's digits.

    rsb-tune seeds --n 8 --trainer examples/tiny_mlp.py:train --executor local --until "halfwidth<=1.0"

``train(config, report)`` gets the trial's config (your keys, here ``epochs``, ``lr``, ``hidden``,
and the seeds ``model_seed``, ``data_seed``, ``aug_seed``) and reports each epoch. It saves its
state with ``checkpoint=`` and picks it up from ``report.resume``, so a resumed study continues
an interrupted seed from its last epoch instead of starting it over.
"""

import torch
from torch import nn


def _data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # a fixed split
    return x[order[:1400]], y[order[:1400]], x[order[1400:]], y[order[1400:]]


def train(config, report):
    x_train, y_train, x_val, y_val = _data()
    torch.manual_seed(config["model_seed"])  # weight init
    model = nn.Sequential(nn.Linear(64, config.get("hidden", 32)), nn.ReLU(), nn.Linear(config.get("hidden", 32), 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.get("lr", 0.1), momentum=0.9)
    order = torch.Generator().manual_seed(config["data_seed"])  # batch order
    start = 0
    if report.resume is not None:  # the state this trainer passed as checkpoint= before
        model.load_state_dict(report.resume["model"])
        optimizer.load_state_dict(report.resume["optimizer"])
        order.set_state(report.resume["order"])
        start = report.resume["epoch"]
    for epoch in range(start + 1, config.get("epochs", 5) + 1):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(y_train), generator=order).split(64):
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
        state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "order": order.get_state()}
        report(
            epoch=epoch,
            train_loss=total / len(y_train),
            val_loss=nn.functional.cross_entropy(logits, y_val).item(),
            val_top1=100.0 * (logits.argmax(1) == y_val).float().mean().item(),
            checkpoint=state,
        )
