"""Deterministic Chinese names and the places the scenarios play in (GB/T 2260 codes)."""

from __future__ import annotations

import random

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂兰玉萍红华建国文辉鹏飞宇浩然子轩梓涵一诺欣怡雨萱思远嘉怡晨阳博文俊杰佳琪志强海燕晓东春梅丹丹"


def person_name(rng: random.Random) -> str:
    given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
    return rng.choice(SURNAMES) + given


# --- places ----------------------------------------------------------------------

# The outbreak city (a city of about a million in its urban districts) and its districts.
OUTBREAK_CITY = "440300"
OUTBREAK_CITY_NAME = "深圳市"
OUTBREAK_COUNTIES = {
    "440303": "罗湖区", "440304": "福田区", "440305": "南山区", "440306": "宝安区",
    "440307": "龙岗区", "440308": "盐田区", "440309": "龙华区", "440310": "坪山区", "440311": "光明区",
}
# Seven cities of the province that take the overflow of contacts (跨市支援).
SUPPORTING_CITIES = {
    "440100": "广州市", "440400": "珠海市", "440600": "佛山市", "440700": "江门市",
    "441300": "惠州市", "441900": "东莞市", "442000": "中山市",
}

# The spring-festival city: a province many migrant workers come home to.
HOME_CITY = "410100"
HOME_CITY_NAME = "郑州市"
HOME_COUNTIES = {
    "410102": "中原区", "410103": "二七区", "410104": "管城回族区", "410105": "金水区",
    "410106": "上街区", "410108": "惠济区", "410122": "中牟县",
}
# Where returnees come from (county of their stay) and a weight.
ORIGINS = [
    ("440305", "广东省深圳市南山区", 22), ("440106", "广东省广州市天河区", 14), ("310115", "上海市浦东新区", 14),
    ("330106", "浙江省杭州市西湖区", 12), ("330110", "浙江省杭州市余杭区", 6), ("320505", "江苏省苏州市虎丘区", 10),
    ("110105", "北京市朝阳区", 10), ("530102", "云南省昆明市五华区", 4), ("230102", "黑龙江省哈尔滨市道里区", 3),
    ("510104", "四川省成都市锦江区", 5),
]
COUNTRIES = [("US", 3), ("GB", 2), ("JP", 3), ("KR", 3), ("AE", 2), ("SG", 2), ("DE", 1), ("IT", 1), ("AU", 1)]
# Ports of entry in other provinces (口岸), where a returnee may have served port quarantine already.
OTHER_PORTS = [("310115", "上海浦东国际机场口岸"), ("440106", "广州白云国际机场口岸"), ("110105", "北京首都国际机场口岸")]
HOME_PORT = "410122"  # 郑州新郑国际机场 (in 中牟县)

# The mass-screening city.
SCREENING_CITY = "420100"
SCREENING_CITY_NAME = "武汉市"
SCREENING_COUNTIES = {
    "420102": "江岸区", "420103": "江汉区", "420104": "硚口区", "420105": "汉阳区", "420106": "武昌区",
    "420107": "青山区", "420111": "洪山区", "420112": "东西湖区", "420113": "汉南区", "420114": "蔡甸区",
    "420115": "江夏区", "420116": "黄陂区", "420117": "新洲区",
}


def weighted(rng: random.Random, items: list[tuple]) -> tuple:
    return rng.choices(items, weights=[item[-1] for item in items])[0]
