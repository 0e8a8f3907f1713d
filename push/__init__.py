"""Changes pushed to webhook endpoints (contract §13): where they may go, how they are signed, how they are sent,
and the delivery process that sends them."""
