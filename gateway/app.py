"""Build a complete gateway (service + planner) from a config: one place for the wiring."""
from gateway.plan_push import PlanPusher
from gateway.service import Gateway
from gateway.users import Users


def make_gateway(cfg, clock=None, log=None):
    gw = Gateway(cfg, clock, log)
    gw.plans = PlanPusher(db=gw.db, clock=gw.clock, registry=gw.registry, alerts=gw.alerts, command=gw.command,
                          log=gw.log, utc_offset=cfg.utc_offset, horizon_days=cfg.horizon_days)
    gw.users = Users(gw.db, gw.clock)
    return gw
