"""The gateway's routes, one router per channel or page group; ``create_app`` wires them."""
