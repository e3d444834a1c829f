"""Models: LINE pre-encoding, the LightGCN mobility encoder, modality heads and the MobCLIP module."""
