"""What the train and eval entry points build on: config helpers, object instantiation
from config groups, evaluation and reporting."""
