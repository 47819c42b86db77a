"""Build a complete gateway (service + planner) from a config: one place for the wiring."""
from gateway.plans import PlanService
from gateway.service import Gateway
from gateway.users import Users


def make_gateway(cfg, clock=None, log=None):
    gw = Gateway(cfg, clock, log)
    gw.plans = PlanService(gw)
    gw.users = Users(gw.db, gw.clock)
    return gw
