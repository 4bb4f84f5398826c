"""The wizard's steps, one screen each, in order."""
from .model import ModelScreen
from .languages import LanguagesScreen
from .budget import BudgetScreen
from .frontier import FrontierScreen
from .export import ExportScreen
from .run import RunScreen
from .results import ResultsScreen

__all__ = ["ModelScreen", "LanguagesScreen", "BudgetScreen", "FrontierScreen", "ExportScreen",
           "RunScreen", "ResultsScreen"]
