"""What games need beyond their rules: the league of snapshots (`league`), opponents drawn from it
(`opponents`), search over a policy-value network (`search`), matches and strength probes (`arena`),
fixed anchors (`anchors`) and Bradley-Terry ratings (`ratings`).
"""
