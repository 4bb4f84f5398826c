"""What every step shares: a title line with the step number, back/next, the footer."""
from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Button, Static

STEPS = ("Model", "Languages", "Budget", "Export", "Run", "Results")


class WizardScreen(Screen):
    STEP = 0                       # 1-based index into STEPS

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
    ]

    @property
    def state(self):
        return self.app.state

    def title_bar(self) -> Static:
        steps = "  ".join((f"[reverse] {i + 1} {s} [/reverse]" if i + 1 == self.STEP else f"{i + 1} {s}")
                          for i, s in enumerate(STEPS))
        return Static(steps, id="steps", classes="steps")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "back":
            event.stop()
            self.action_back()
        elif event.button.id == "next":
            event.stop()
            self.action_next()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:       # [default screen, step 1, ...]
            self.app.pop_screen()

    def action_next(self) -> None:               # each step validates, then pushes the next
        pass
