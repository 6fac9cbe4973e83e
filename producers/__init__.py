"""Camera side: the event producer SDK and the fleet simulator."""
