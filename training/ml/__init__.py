"""The torch side of training. Modules here import torch inside functions only, so that
importing them (e.g. for type names or numpy helpers) never loads torch in the web process."""
